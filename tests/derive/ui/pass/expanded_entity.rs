//! SeaORM's expanded entity format: no `table_name` on the struct, so the prefix is
//! `EntityName::table_name` at run time. The key field still needs its marker.

mod cake {
    use sea_orm::entity::prelude::*;

    #[derive(Copy, Clone, Default, Debug, DeriveEntity)]
    pub struct Entity;

    impl EntityName for Entity {
        fn table_name(&self) -> &'static str {
            "cake"
        }
    }

    #[derive(
        Clone, Debug, PartialEq, Eq, DeriveModel, DeriveActiveModel, turbo_model::ModelStream,
    )]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i32,
        pub name: String,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveColumn)]
    pub enum Column {
        Id,
        Name,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DerivePrimaryKey)]
    pub enum PrimaryKey {
        Id,
    }

    impl PrimaryKeyTrait for PrimaryKey {
        type ValueType = i32;

        fn auto_increment() -> bool {
            true
        }
    }

    #[derive(Copy, Clone, Debug, EnumIter)]
    pub enum Relation {}

    impl ColumnTrait for Column {
        type EntityName = Entity;

        fn def(&self) -> ColumnDef {
            match self {
                Self::Id => ColumnType::Integer.def(),
                Self::Name => ColumnType::String(StringLen::None).def(),
            }
        }
    }

    impl RelationTrait for Relation {
        fn def(&self) -> RelationDef {
            match *self {}
        }
    }
}

fn main() {
    use turbo_model::StreamEntity;

    assert_eq!(cake::Entity::stream_prefix(), "cake");
    let cake = cake::Model {
        id: 2,
        name: "cheese".into(),
    };
    assert_eq!(cake.stream().name(), "cake:2");
    assert_eq!(cake::Entity::stream_of(2), cake.stream());
}
