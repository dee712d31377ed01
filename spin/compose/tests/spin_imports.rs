//! Builds the Spin artifact as `spin build` does and checks that it imports only what
//! Spin's platform world offers (the check `build` runs), and that the check does fail
//! for a component that imports something Spin lacks: the bare auth component, whose
//! `portcullis:auth/store` only the adapter supplies, and the bare mail relay, whose
//! `portcullis:auth/api` only the auth component supplies.

use portcullis_spin_compose::{
    artifact_path, build, check_imports, imported_interfaces, portable_path, target_dir,
    workspace_dir,
};

#[test]
fn the_artifact_imports_only_what_spin_provides() {
    let workspace = workspace_dir();
    let artifact = build(&workspace).unwrap();
    assert_eq!(artifact.path, artifact_path(&workspace));
    let bytes = std::fs::read(&artifact.path).unwrap();
    let imports = check_imports(&bytes, &workspace).unwrap();
    assert_eq!(imports, artifact.imports);
    for expected in [
        "spin:sqlite/sqlite@3.1.0",
        "spin:postgres/postgres@4.2.0",
        "wasi:config/store@0.2.0-draft-2024-09-27",
        // The mail relay's webhook.
        "wasi:http/outgoing-handler@0.2.12",
    ] {
        assert!(
            imports.iter().any(|import| import == expected),
            "{imports:?}"
        );
    }
    assert!(
        !imports
            .iter()
            .any(|import| import.starts_with("portcullis:")),
        "the adapter supplies the store, the auth component the relay's api: {imports:?}"
    );

    // The portable component carries the Argon2 kernel: a host supplies the store.
    assert_eq!(artifact.portable, portable_path(&workspace));
    let portable = imported_interfaces(&std::fs::read(&artifact.portable).unwrap()).unwrap();
    assert!(
        portable
            .iter()
            .any(|import| import == "portcullis:auth/store@0.1.0"),
        "{portable:?}"
    );
    assert!(
        !portable
            .iter()
            .any(|import| import.starts_with("portcullis:auth/password-hashing")),
        "{portable:?}"
    );

    let auth =
        target_dir(&workspace).join("component/wasm32-wasip2/release/portcullis_component.wasm");
    let error = check_imports(&std::fs::read(auth).unwrap(), &workspace).unwrap_err();
    let message = error.to_string();
    assert!(
        message.contains(
            "imports portcullis:auth/store@0.1.0, which Spin's platform world does not offer"
        ),
        "{message}"
    );

    let relay =
        target_dir(&workspace).join("spin/wasm32-wasip2/release/portcullis_spin_mail_relay.wasm");
    let error = check_imports(&std::fs::read(relay).unwrap(), &workspace).unwrap_err();
    let message = error.to_string();
    assert!(
        message.contains(
            "imports portcullis:auth/api@0.1.0, which Spin's platform world does not offer"
        ),
        "{message}"
    );
}
