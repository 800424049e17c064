//! A nullable foreign key gives an optional parent stream.

mod folder {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, turbo_model::ModelStream)]
    #[sea_orm(table_name = "folder")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i32,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}
}

mod note {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, turbo_model::ModelStream)]
    #[sea_orm(table_name = "note")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i32,
        #[stream(parent = super::folder::Entity)]
        pub folder_id: Option<i32>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}
}

mod draft {
    use sea_orm::entity::prelude::*;

    // The long spelling of `Option` is recognised too.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, turbo_model::ModelStream)]
    #[sea_orm(table_name = "draft")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i32,
        #[stream(parent = crate::folder::Entity)]
        pub folder_id: ::std::option::Option<i32>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}
}

fn main() {
    let filed = note::Model {
        id: 1,
        folder_id: Some(7),
    };
    let loose = note::Model {
        id: 2,
        folder_id: None,
    };
    let parent: Option<turbo_model::Stream> = filed.parent_stream();
    assert_eq!(
        parent.as_ref().map(|stream| stream.name().as_str()),
        Some("folder:7")
    );
    assert_eq!(loose.parent_stream(), None);

    let draft = draft::Model {
        id: 1,
        folder_id: Some(7),
    };
    assert_eq!(draft.parent_stream(), parent);
    assert_eq!(draft.stream().name(), "draft:1");
}
