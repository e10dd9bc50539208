//! The notes, over sqlx. Every query is scoped by `owner`, which only ever comes
//! from the verified token's `sub`.

use rand::RngCore as _;
use sqlx::Row;
use sqlx::any::AnyRow;
use tollgate_proto::notes::v1::Note;
use tollgate_service_kit::db::Database;

/// This store's schema, per backend (`migrations/`).
static MIGRATIONS: tollgate_service_kit::db::Migrations = tollgate_service_kit::migrations!();

#[derive(Debug, Clone)]
pub struct NoteStorage {
    db: Database,
}

impl NoteStorage {
    pub async fn connect(url: &str) -> Result<Self, sqlx::Error> {
        Ok(Self { db: tollgate_service_kit::db::connect(url, &MIGRATIONS).await? })
    }

    pub async fn notes(&self, owner: &str) -> Result<Vec<Note>, sqlx::Error> {
        let rows = sqlx::query(
            "SELECT id, owner, title, body, created_at, written_by FROM notes WHERE owner = $1 \
             ORDER BY created_at, id",
        )
        .bind(owner)
        .fetch_all(&self.db.reads)
        .await?;
        rows.iter().map(note_from_row).collect()
    }

    pub async fn create(
        &self,
        owner: &str,
        title: &str,
        body: &str,
        written_by: &str,
        now: i64,
    ) -> Result<Note, sqlx::Error> {
        let mut id = [0u8; 16];
        rand::rngs::OsRng.fill_bytes(&mut id);
        let note = Note {
            id: id.iter().map(|b| format!("{b:02x}")).collect(),
            owner: owner.to_owned(),
            title: title.to_owned(),
            body: body.to_owned(),
            created_at: now,
            written_by: written_by.to_owned(),
        };
        sqlx::query(
            "INSERT INTO notes (id, owner, title, body, created_at, written_by) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&note.id)
        .bind(&note.owner)
        .bind(&note.title)
        .bind(&note.body)
        .bind(note.created_at)
        .bind(&note.written_by)
        .execute(&self.db.writes)
        .await?;
        Ok(note)
    }

    /// `false` if the owner has no note with that id (including when someone else
    /// does: the answer must not tell them apart).
    pub async fn delete(&self, owner: &str, id: &str) -> Result<bool, sqlx::Error> {
        let done = sqlx::query("DELETE FROM notes WHERE id = $1 AND owner = $2")
            .bind(id)
            .bind(owner)
            .execute(&self.db.writes)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    /// `(notes, owners with notes)`: counts, never contents.
    pub async fn counts(&self) -> Result<(i64, i64), sqlx::Error> {
        let row =
            sqlx::query("SELECT COUNT(*) AS notes, COUNT(DISTINCT owner) AS owners FROM notes")
                .fetch_one(&self.db.reads)
                .await?;
        Ok((row.try_get("notes")?, row.try_get("owners")?))
    }
}

fn note_from_row(row: &AnyRow) -> Result<Note, sqlx::Error> {
    Ok(Note {
        id: row.try_get("id")?,
        owner: row.try_get("owner")?,
        title: row.try_get("title")?,
        body: row.try_get("body")?,
        created_at: row.try_get("created_at")?,
        written_by: row.try_get("written_by")?,
    })
}
