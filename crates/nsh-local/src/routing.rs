//! Does this derivation go to the cluster? (the settings `system`, `system-features`,
//! `mandatory-system-features`).

use crate::config::Config;

#[derive(Debug, PartialEq, Eq)]
pub enum Route {
    Cluster,
    /// Not ours; the reason is for `-v` diagnostics.
    Elsewhere(String),
}

pub fn route(config: &Config, system: &str, required_features: &[String]) -> Route {
    if system != config.system {
        return Route::Elsewhere(format!(
            "system '{system}' is not the cluster's '{}'",
            config.system
        ));
    }
    if let Some(f) = required_features
        .iter()
        .find(|f| !config.system_features.contains(f))
    {
        return Route::Elsewhere(format!(
            "requires feature '{f}', which the cluster lacks (system-features = {})",
            config.system_features.join(" ")
        ));
    }
    if let Some(f) = config
        .mandatory_system_features
        .iter()
        .find(|f| !required_features.contains(f))
    {
        return Route::Elsewhere(format!("does not require the mandatory feature '{f}'"));
    }
    Route::Cluster
}
