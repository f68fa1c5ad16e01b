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

#[cfg(test)]
mod tests {
    use super::*;

    fn config(system_features: &[&str], mandatory: &[&str]) -> Config {
        Config {
            system_features: system_features.iter().map(|s| s.to_string()).collect(),
            mandatory_system_features: mandatory.iter().map(|s| s.to_string()).collect(),
            ..Config::default()
        }
    }

    /// (cluster features, mandatory, derivation's system, its required features, expected:
    /// None = cluster, Some(text) = elsewhere with a reason containing text)
    type Case = (
        &'static [&'static str],
        &'static [&'static str],
        &'static str,
        &'static [&'static str],
        Option<&'static str>,
    );

    #[test]
    fn routes_by_system_and_features() {
        let cases: &[Case] = &[
            (&["nsh"], &[], "x86_64-linux", &[], None),
            (&["nsh"], &[], "x86_64-linux", &["nsh"], None),
            (
                &["nsh", "big-parallel"],
                &[],
                "x86_64-linux",
                &["big-parallel", "nsh"],
                None,
            ),
            (
                &["nsh"],
                &[],
                "aarch64-linux",
                &["nsh"],
                Some("system 'aarch64-linux' is not the cluster's 'x86_64-linux'"),
            ),
            (
                &["nsh"],
                &[],
                "x86_64-linux",
                &["kvm"],
                Some("requires feature 'kvm', which the cluster lacks (system-features = nsh)"),
            ),
            (
                &["nsh"],
                &[],
                "x86_64-linux",
                &["nsh", "kvm"],
                Some("'kvm'"),
            ),
            (
                &["nsh"],
                &["nsh"],
                "x86_64-linux",
                &[],
                Some("does not require the mandatory feature 'nsh'"),
            ),
            (&["nsh"], &["nsh"], "x86_64-linux", &["nsh"], None),
            // A mandatory feature the cluster does not list still has to be required, and a
            // derivation requiring it is then refused for the missing feature.
            (
                &["nsh"],
                &["gpu"],
                "x86_64-linux",
                &["gpu"],
                Some("requires feature 'gpu'"),
            ),
            (
                &[],
                &[],
                "x86_64-linux",
                &["nsh"],
                Some("requires feature 'nsh', which the cluster lacks (system-features = )"),
            ),
        ];
        for (i, (features, mandatory, system, required, want)) in cases.iter().enumerate() {
            let required: Vec<String> = required.iter().map(|s| s.to_string()).collect();
            let got = route(&config(features, mandatory), system, &required);
            match (want, &got) {
                (None, Route::Cluster) => {}
                (Some(text), Route::Elsewhere(why)) if why.contains(text) => {}
                _ => panic!(
                    "case {i}: {system} {required:?} with {features:?}/{mandatory:?}: got {got:?}, want {want:?}"
                ),
            }
        }
    }
}
