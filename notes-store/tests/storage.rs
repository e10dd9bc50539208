//! The notes store's storage on both backends.

// In tests a panic is the failure report.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use tollgate_notes_store::storage::NoteStorage;

async fn notes_are_per_owner(storage: NoteStorage) {
    let note = storage.create("alice", "t", "b", "tollgate-resource", 10).await.unwrap();
    storage.create("bob", "u", "", "tollgate-resource", 11).await.unwrap();
    let mine = storage.notes("alice").await.unwrap();
    assert_eq!(mine.len(), 1);
    assert_eq!((mine[0].written_by.as_str(), mine[0].created_at), ("tollgate-resource", 10));
    assert!(!storage.delete("bob", &note.id).await.unwrap(), "not bob's to delete");
    assert_eq!(storage.counts().await.unwrap(), (2, 2));
    assert!(storage.delete("alice", &note.id).await.unwrap());
    assert_eq!(storage.counts().await.unwrap(), (1, 1));
}

#[tokio::test]
async fn on_each_backend() {
    tollgate_service_kit::testing::on_each_backend(async |url| {
        notes_are_per_owner(NoteStorage::connect(url).await.unwrap()).await;
    })
    .await;
}
