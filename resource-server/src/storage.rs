//! The resource owners' profiles, over sqlx's `Any` driver (SQLite or PostgreSQL).
//! Every query is scoped by `owner`: there is no way to ask this store for
//! someone's data without saying whose. (Notes live in the notes store.)

use sqlx::Row;
use tollgate_proto::resource::v1::Profile;
use tollgate_service_kit::db::Database;

/// This store's schema, per backend (`migrations/`).
static MIGRATIONS: tollgate_service_kit::db::Migrations = tollgate_service_kit::migrations!();

#[derive(Debug, Clone)]
pub struct ResourceStore {
    db: Database,
}

impl ResourceStore {
    pub async fn connect(url: &str) -> Result<Self, sqlx::Error> {
        Ok(Self { db: tollgate_service_kit::db::connect(url, &MIGRATIONS).await? })
    }

    /// The owner's profile; an owner who never wrote one has an empty profile.
    pub async fn profile(&self, owner: &str) -> Result<Profile, sqlx::Error> {
        let row = sqlx::query("SELECT display_name, email FROM profiles WHERE owner = $1")
            .bind(owner)
            .fetch_optional(&self.db.reads)
            .await?;
        Ok(match row {
            Some(row) => Profile {
                owner: owner.to_owned(),
                display_name: row.try_get("display_name")?,
                email: row.try_get("email")?,
            },
            None => Profile { owner: owner.to_owned(), ..Profile::default() },
        })
    }

    pub async fn put_profile(&self, profile: &Profile, now: i64) -> Result<(), sqlx::Error> {
        sqlx::query(
            "INSERT INTO profiles (owner, display_name, email, updated_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (owner) DO UPDATE SET display_name = excluded.display_name, \
             email = excluded.email, updated_at = excluded.updated_at",
        )
        .bind(&profile.owner)
        .bind(&profile.display_name)
        .bind(&profile.email)
        .bind(now)
        .execute(&self.db.writes)
        .await?;
        Ok(())
    }

    /// How many owners have a profile: counted by the database, so the
    /// report costs the same memory for ten owners or ten million.
    pub async fn count_profile_owners(&self) -> Result<i64, sqlx::Error> {
        sqlx::query("SELECT COUNT(*) AS owners FROM profiles")
            .fetch_one(&self.db.reads)
            .await?
            .try_get("owners")
    }
}
