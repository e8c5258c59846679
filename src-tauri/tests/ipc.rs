//! Calls the app's commands through Tauri's IPC layer on the mock runtime.

use tauri::ipc::{CallbackFn, InvokeBody};
use tauri::test::{INVOKE_KEY, get_ipc_response, mock_builder, mock_context, noop_assets};
use tauri::webview::InvokeRequest;
use tunesmith_app::{APP_NAME, AppInfo, build_app};

fn invoke(cmd: &str) -> Result<serde_json::Value, serde_json::Value> {
    let app = build_app(mock_builder())
        .build(mock_context(noop_assets()))
        .expect("mock app builds");
    let webview = tauri::WebviewWindowBuilder::new(&app, "main", Default::default())
        .build()
        .expect("mock window builds");
    get_ipc_response(
        &webview,
        InvokeRequest {
            cmd: cmd.into(),
            callback: CallbackFn(0),
            error: CallbackFn(1),
            url: if cfg!(windows) {
                "http://tauri.localhost"
            } else {
                "tauri://localhost"
            }
            .parse()
            .unwrap(),
            body: InvokeBody::default(),
            headers: Default::default(),
            invoke_key: INVOKE_KEY.to_string(),
        },
    )
    .map(|body| body.deserialize::<serde_json::Value>().unwrap())
}

#[test]
fn app_info_returns_name_and_crate_version() {
    let value = invoke("app_info").expect("app_info succeeds");
    let info: AppInfo = serde_json::from_value(value.clone()).expect("typed AppInfo");
    assert_eq!(info.version, env!("CARGO_PKG_VERSION"));
    assert_eq!(info.name, APP_NAME);
    // The frontend reads exactly these two keys.
    assert_eq!(
        value,
        serde_json::json!({ "name": "Tunesmith", "version": env!("CARGO_PKG_VERSION") })
    );
}

#[test]
fn unknown_command_is_an_error() {
    assert!(invoke("no_such_command").is_err());
}
