use std::path::Path;

#[test]
fn demo_config_validates() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/demo.toml");
    match fieldgate::config::load(&path) {
        Ok(c) => println!("{c:#?}"),
        Err(e) => panic!("{e}"),
    }
}
