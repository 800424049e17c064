//! The chat's schema, as versioned SeaORM migrations: run on start-up, each once.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::{
    integer, integer_null, pk_auto, string, string_null, string_uniq, text,
};

/// All migrations, in order.
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(CreateRoomsAndMessages),
            Box::new(AddPrivateRooms),
            Box::new(AddAuthors),
        ]
    }
}

struct CreateRoomsAndMessages;

impl MigrationName for CreateRoomsAndMessages {
    fn name(&self) -> &str {
        "m20261128_000001_create_rooms_and_messages"
    }
}

#[async_trait::async_trait]
#[allow(
    elided_lifetimes_in_paths,
    reason = "async_trait's expansion must match the trait's elided lifetime"
)]
impl MigrationTrait for CreateRoomsAndMessages {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table("room")
                    .col(pk_auto("id"))
                    .col(string("name"))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table("message")
                    .col(pk_auto("id"))
                    .col(integer("room_id"))
                    .col(text("text"))
                    .foreign_key(
                        ForeignKey::create()
                            .name("message_room_fk")
                            .from("message", "room_id")
                            .to("room", "id")
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("message_room_id_idx")
                    .table("message")
                    .col("room_id")
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table("message").to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table("room").to_owned())
            .await
    }
}

struct AddPrivateRooms;

impl MigrationName for AddPrivateRooms {
    fn name(&self) -> &str {
        "m20261128_000002_add_private_rooms"
    }
}

#[async_trait::async_trait]
#[allow(
    elided_lifetimes_in_paths,
    reason = "async_trait's expansion must match the trait's elided lifetime"
)]
impl MigrationTrait for AddPrivateRooms {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table("room")
                    .add_column(string_null("private_to"))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table("room")
                    .drop_column("private_to")
                    .to_owned(),
            )
            .await
    }
}

struct AddAuthors;

impl MigrationName for AddAuthors {
    fn name(&self) -> &str {
        "m20261201_000003_add_authors"
    }
}

#[async_trait::async_trait]
#[allow(
    elided_lifetimes_in_paths,
    reason = "async_trait's expansion must match the trait's elided lifetime"
)]
impl MigrationTrait for AddAuthors {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table("author")
                    .col(pk_auto("id"))
                    .col(string_uniq("name"))
                    .to_owned(),
            )
            .await?;
        // A plain column: SQLite cannot add a foreign key to an existing table. The
        // entity's relation says what it points at; nothing deletes authors.
        manager
            .alter_table(
                Table::alter()
                    .table("message")
                    .add_column(integer_null("author_id"))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table("message")
                    .drop_column("author_id")
                    .to_owned(),
            )
            .await?;
        manager
            .drop_table(Table::drop().table("author").to_owned())
            .await
    }
}
