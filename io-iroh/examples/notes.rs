//! A host app on the facade: two devices share a note through three acceptors, all in this
//! process on loopback. Run with `cargo run --release -p plait-io-iroh --example notes`.

use std::time::Duration;

use plait_io_iroh::app::{AppError, DeviceApp, NodeOptions, changes_text};
use plait_io_iroh::server::AcceptorServer;
use plait_kernel::mls::Role;

#[tokio::main]
async fn main() -> Result<(), AppError> {
    let folder = tempfile::tempdir().map_err(|error| AppError::BadInput(error.to_string()))?;
    let mut acceptors = Vec::new();
    for index in 0..3 {
        acceptors.push(AcceptorServer::start(&folder.path().join(format!("acceptor-{index}")), NodeOptions::default()).await?);
    }
    let tickets: Vec<_> = acceptors.iter().map(AcceptorServer::ticket).collect();

    let laptop = DeviceApp::open(&folder.path().join("laptop"), NodeOptions::default()).await?;
    let phone = DeviceApp::open(&folder.path().join("phone"), NodeOptions::default()).await?;
    let note = laptop.create_document("groceries", &tickets).await?;
    let code = note.invite(Role::Writer, Duration::from_secs(600), tickets).await?;
    let on_phone = phone.join(&code, Duration::from_secs(30)).await?;

    let mut changes = on_phone.subscribe();
    note.append("milk, eggs").await?; // local and durable when this returns
    while let Some(event) = changes.next().await {
        if changes_text(&event) {
            println!("the phone sees: {}", on_phone.text().await?);
            break;
        }
    }
    let mut on_laptop = note.subscribe();
    on_phone.insert(0, "bread, ").await?;
    while let Some(event) = on_laptop.next().await {
        if changes_text(&event) {
            break;
        }
    }
    println!("the laptop sees: {}", note.text().await?);
    println!("status: {:?}", note.status().await?);
    laptop.shutdown().await;
    phone.shutdown().await;
    for acceptor in acceptors {
        acceptor.shutdown().await;
    }
    Ok(())
}
