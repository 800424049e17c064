//! A composite key: key fields in declaration order, joined by `,`, each escaped.

mod membership {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, turbo_model::ModelStream)]
    #[sea_orm(table_name = "membership")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub team: String,
        pub role: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub user_id: i64,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}
}

fn main() {
    let row = membership::Model {
        team: "red,blue".into(),
        role: "admin".into(),
        user_id: 42,
    };
    assert_eq!(row.stream().name(), "membership:red%2Cblue,42");
    assert_eq!(
        membership::Entity::stream_of(("red,blue".to_owned(), 42)),
        row.stream()
    );
}
