//! Where `nsh.conf` is looked for and which source wins.
use super::*;

#[test]
fn user_file_list() {
    let env = ConfigEnv {
        home: Some("/root".into()),
        ..Default::default()
    };
    assert_eq!(
        env.user_files(),
        vec![
            PathBuf::from("/root/.config/nix/nsh.conf"),
            PathBuf::from("/etc/xdg/nix/nsh.conf")
        ]
    );
    assert_eq!(env.system_file(), PathBuf::from("/etc/nix/nsh.conf"));
    let env = ConfigEnv {
        nix_conf_dir: Some(String::new()),
        xdg_config_home: Some("/x".into()),
        xdg_config_dirs: Some(String::new()),
        home: Some("/root".into()),
        ..Default::default()
    };
    assert_eq!(env.user_files(), vec![PathBuf::from("/x/nix/nsh.conf")]);
    assert_eq!(env.system_file(), PathBuf::from("/etc/nix/nsh.conf"));
    let env = ConfigEnv {
        nsh_user_conf_files: Some("/a.conf::/b.conf".into()),
        ..env
    };
    assert_eq!(
        env.user_files(),
        vec![PathBuf::from("/a.conf"), PathBuf::from("/b.conf")]
    );
}

#[test]
fn override_order_system_user_env() {
    let s = Scratch::new();
    s.write(
        "etc-nix/nsh.conf",
        &format!(
            "{}system = sys-tem\nslurm-api-host = sys\npbs-port = 1\nslurm-api-port = 1\n",
            slurm_ok()
        ),
    );
    s.write(
        "xdg2/nix/nsh.conf",
        "slurm-api-host = xdg2\npbs-port = 2\nslurm-api-port = 2\nextra-system-features = two\n",
    );
    s.write(
        "xdg1/nix/nsh.conf",
        "slurm-api-host = xdg1\npbs-port = 3\nextra-system-features = one\n",
    );
    s.write("home/.config/nix/nsh.conf", "slurm-api-host = home\n");
    let mut env = env_in(&s);
    env.nsh_config = Some(Secret::new("system = env-sys\n"));
    let c = load_with(&env).unwrap();
    assert_eq!(c.system, "env-sys");
    assert_eq!(c.origins["system"], "NSH_CONFIG");
    assert_eq!(c.slurm_api_host, "home");
    assert_eq!(c.pbs_port, 3);
    assert_eq!(c.slurm_api_port, 2);
    assert_eq!(c.system_features, vec!["nsh", "two", "one"]);
    assert_eq!(
        c.origins["slurm-api-port"],
        format!("{}:3", s.path("xdg2/nix/nsh.conf"))
    );
    assert_eq!(
        c.files_read,
        vec![
            s.path("etc-nix/nsh.conf"),
            s.path("xdg2/nix/nsh.conf"),
            s.path("xdg1/nix/nsh.conf"),
            s.path("home/.config/nix/nsh.conf"),
            "NSH_CONFIG".to_string(),
        ]
    );
}

#[test]
fn xdg_config_home_and_user_conf_files() {
    let s = Scratch::new();
    s.write("etc-nix/nsh.conf", &slurm_ok());
    s.write("cfg/nix/nsh.conf", "system = cfg-home\n");
    s.write("home/.config/nix/nsh.conf", "system = home-dot-config\n");
    let mut env = env_in(&s);
    env.xdg_config_home = Some(s.path("cfg"));
    assert_eq!(load_with(&env).unwrap().system, "cfg-home");
    // NSH_USER_CONF_FILES replaces the list; its first file wins.
    s.write("u1.conf", "system = first-file\n");
    s.write("u2.conf", "system = second-file\nslurm-api-host = u2\n");
    env.nsh_user_conf_files = Some(format!(
        "{}:{}:{}",
        s.path("u1.conf"),
        s.path("none.conf"),
        s.path("u2.conf")
    ));
    let c = load_with(&env).unwrap();
    assert_eq!(c.system, "first-file");
    assert_eq!(c.slurm_api_host, "u2");
    assert!(c.files_missing.contains(&s.path("none.conf")));
}

#[test]
fn nsh_config_text_and_errors() {
    let s = Scratch::new();
    let mut env = env_in(&s);
    env.nsh_config = Some(Secret::new(format!("{}\nbogus = 1", slurm_ok())));
    assert_eq!(
        load_with(&env).unwrap_err().to_string(),
        "nsh.conf: NSH_CONFIG:4: unknown setting 'bogus'"
    );
    env.nsh_config = Some(Secret::new(slurm_ok()));
    let c = load_with(&env).unwrap();
    assert_eq!(c.files_read, vec!["NSH_CONFIG"]);
    assert_eq!(c.files_missing.len(), 4);
    let text = Source::Text {
        text: "include inc.conf".into(),
        origin: "NSH_CONFIG".into(),
        base_dir: Some(s.0.clone()),
    };
    s.write("inc.conf", "system = from-include\n");
    assert_eq!(load_from(&[text]).unwrap().system, "from-include");
}
