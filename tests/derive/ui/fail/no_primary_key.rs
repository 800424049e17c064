use turbo_model::ModelStream;

// An entity in SeaORM's expanded format, whose key is declared only by `PrimaryKey`.
mod cake {
    use super::ModelStream;
    use sea_orm::entity::prelude::*;

    #[derive(Copy, Clone, Default, Debug, DeriveEntity)]
    pub struct Entity;

    impl EntityName for Entity {
        fn table_name(&self) -> &'static str {
            "cake"
        }
    }

    #[derive(Clone, Debug, PartialEq, Eq, DeriveModel, DeriveActiveModel, ModelStream)]
    // `DeriveModel` takes the key from `PrimaryKey`; the derive needs it on the field.
    pub struct Model {
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
    // The stub keeps the rest of the derive's API: only the missing key is reported.
    let _ = cake::Model {
        id: 1,
        name: String::new(),
    }
    .stream();
}
