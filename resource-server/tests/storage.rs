//! The resource server's storage on both backends.

// In tests a panic is the failure report.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use tollgate_proto::resource::v1::Profile;
use tollgate_resource_server::storage::ResourceStore;

async fn profiles_are_per_owner(store: ResourceStore) {
    assert_eq!(store.profile("alice").await.unwrap().display_name, "");
    let profile =
        Profile { owner: "alice".into(), display_name: "Alice".into(), email: "a@x".into() };
    store.put_profile(&profile, 1).await.unwrap();
    store.put_profile(&Profile { display_name: "Alice L.".into(), ..profile }, 2).await.unwrap();
    assert_eq!(store.profile("alice").await.unwrap().display_name, "Alice L.");
    assert_eq!(store.profile("bob").await.unwrap().display_name, "");
    // Reading a profile creates none: only alice has one.
    assert_eq!(store.count_profile_owners().await.unwrap(), 1);
}

#[tokio::test]
async fn on_each_backend() {
    tollgate_service_kit::testing::on_each_backend(async |url| {
        profiles_are_per_owner(ResourceStore::connect(url).await.unwrap()).await;
    })
    .await;
}
