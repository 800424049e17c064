//! The fields registered for the `turbo_subscribe` tag are the names serde writes.

use turbo_model::__private::{EntityInfo, inventory};

mod account {
    use sea_orm::entity::prelude::*;

    #[derive(
        Clone, Debug, PartialEq, Eq, DeriveEntityModel, turbo_model::ModelStream, serde::Serialize,
    )]
    #[sea_orm(table_name = "account")]
    #[serde(rename_all = "camelCase")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub account_id: i32,
        pub display_name: String,
        #[serde(rename = "kind")]
        pub r#type: String,
        #[serde(rename(serialize = "mail", deserialize = "email_address"))]
        pub email_address: String,
        pub r#ref: String,
        #[serde(skip)]
        pub password_hash: String,
        #[serde(skip_serializing)]
        pub secret: String,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}
}

mod ticket {
    use sea_orm::entity::prelude::*;

    #[derive(
        Clone, Debug, PartialEq, Eq, DeriveEntityModel, turbo_model::ModelStream, serde::Serialize,
    )]
    #[sea_orm(table_name = "ticket")]
    #[serde(rename_all(serialize = "SCREAMING-KEBAB-CASE"))]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub ticket_no: i32,
        pub opened_by: String,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}
}

mod token {
    use sea_orm::entity::prelude::*;

    // The key is never serialized: templates cannot find this row's stream, so the
    // entity is not registered for the tag. Its streams still work in Rust.
    #[derive(
        Clone, Debug, PartialEq, Eq, DeriveEntityModel, turbo_model::ModelStream, serde::Serialize,
    )]
    #[sea_orm(table_name = "token")]
    pub struct Model {
        #[sea_orm(primary_key)]
        #[serde(skip)]
        pub id: i32,
        pub label: String,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}
}

fn registered(prefix: &str) -> Option<&'static EntityInfo> {
    inventory::iter::<EntityInfo>
        .into_iter()
        .find(|info| (info.prefix)() == prefix)
}

fn main() {
    let account = registered("account").expect("account is registered");
    assert!(account.module.ends_with("::account"), "{}", account.module);
    assert_eq!(account.primary_key, ["accountId"]);
    assert_eq!(
        account.fields,
        ["accountId", "displayName", "kind", "mail", "ref"]
    );

    let row = account::Model {
        account_id: 1,
        display_name: "Ada".into(),
        r#type: "admin".into(),
        email_address: "ada@example.com".into(),
        r#ref: "x".into(),
        password_hash: "h".into(),
        secret: "s".into(),
    };
    let json = serde_json::to_value(&row).expect("serializes");
    let mut keys: Vec<&str> = json
        .as_object()
        .expect("an object")
        .keys()
        .map(String::as_str)
        .collect();
    let mut fields = account.fields.to_vec();
    keys.sort_unstable();
    fields.sort_unstable();
    assert_eq!(keys, fields, "registered names are exactly serde's");

    let ticket = registered("ticket").expect("ticket is registered");
    assert_eq!(ticket.primary_key, ["TICKET-NO"]);
    assert_eq!(ticket.fields, ["TICKET-NO", "OPENED-BY"]);

    assert!(registered("token").is_none());
    assert_eq!(
        token::Model {
            id: 4,
            label: "t".into()
        }
        .stream()
        .name(),
        "token:4"
    );
}
