// Rebuild when migrations, templates or static files change: they are
// compiled into the binary.
fn main() {
    for dir in ["migrations", "templates", "static", "src/api/openapi.json"] {
        println!("cargo:rerun-if-changed={dir}");
    }
}
