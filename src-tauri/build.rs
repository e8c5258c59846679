fn main() {
    // Reads tauri.conf.json and capabilities/, and checks that the icons and
    // the frontend folder it names exist. No app ACL manifest is declared, so
    // every command the app registers stays callable from its own windows.
    tauri_build::build()
}
