//! Lists of records whose selection names only scalar fields, resolved without a future per
//! field.
//!
//! async-graphql resolves each field of each object through its own boxed future, about 1 KB
//! that is built and moved into place for a field as simple as `unit`. A dashboard's page
//! resolves hundreds of outcomes that way: their list was a tenth of the server's CPU samples.
//! [`LeafList`] looks at the list's selection. If it is only plain fields (no fragment,
//! directive or argument) that the record type resolves in [`Leaves::leaf`] (scalars, or objects
//! whose own selection is such), the objects are built directly from the records, in the
//! selection's order under each field's response key, as async-graphql would build them. Any
//! other selection goes through async-graphql's own resolution, unchanged. The schema is the
//! same: a `LeafList<T>` is a `[T!]!`. `tests/api.rs` checks that both ways give the same
//! answer, field by field.
//!
//! A connection's `nodes` is a [`Nodes`]: a node type may build a whole page the same way
//! ([`PageLeaves`]), its relations taken from the request's loaders once for the page; `Action`
//! does, for its scalars, `outcomes` and `partners`.
//!
//! async-graphql extensions would see these fields unresolved: the schema has none (see
//! `build_schema` in `graphql/mod.rs`), and one added must come with a look here.
//!
//! Only data already read for the viewer is served this way: the records come from the same
//! loaders as before, and a leaf is a plain value of the record.

use std::borrow::Cow;
use std::future::Future;

use async_graphql::parser::types::{Field, Selection, SelectionSet};
use async_graphql::registry::Registry;
use async_graphql::resolver_utils::resolve_list;
use async_graphql::{
    indexmap::IndexMap, ContextSelectionSet, Name, OutputType, Positioned, ServerResult, Value,
};

/// A GraphQL object some of whose fields are plain values of the record.
pub trait Leaves: OutputType {
    /// The value of `field` exactly as its resolver gives it, or `None` when it is not a field
    /// resolved here (one that takes arguments, reads more data or may fail). An object-valued
    /// field is resolved here only through [`object`], so that its own fields are too.
    fn leaf(&self, field: &Field) -> Option<Value>;
}

/// An `OutputType`'s type functions, the same as those of `Vec<$t>`: `[T!]!` in the schema.
macro_rules! in_schema_as_a_list_of {
    ($t:ty) => {
        fn type_name() -> Cow<'static, str> {
            Vec::<$t>::type_name()
        }

        fn qualified_type_name() -> String {
            Vec::<$t>::qualified_type_name()
        }

        fn create_type_info(registry: &mut Registry) -> String {
            Vec::<$t>::create_type_info(registry)
        }
    };
}

/// A list of `T`, in the schema as `[T!]!`.
pub struct LeafList<T>(pub Vec<T>);

impl<T: Leaves> OutputType for LeafList<T> {
    in_schema_as_a_list_of!(T);

    async fn resolve(
        &self,
        ctx: &ContextSelectionSet<'_>,
        field: &Positioned<Field>,
    ) -> ServerResult<Value> {
        match list(&self.0, &ctx.item.node) {
            Some(list) => Ok(list),
            None => resolve_list(ctx, field, &self.0, Some(self.0.len())).await,
        }
    }
}

/// A page's nodes (a connection's `nodes`), in the schema as `[T!]!` like the `Vec` it
/// replaces. [`PageLeaves::page`] may build the whole list at once; otherwise it resolves
/// through async-graphql as before.
pub struct Nodes<'a, T>(pub Vec<&'a T>);

/// A connection's node type, which may build a page of its objects directly.
pub trait PageLeaves: OutputType {
    /// The page's objects, if `ctx`'s selection lets them be built from the records and what
    /// the request's loaders hold for the whole page; `None` to resolve them as usual.
    fn page(
        items: &[&Self],
        ctx: &ContextSelectionSet<'_>,
    ) -> impl Future<Output = Option<Vec<Value>>> + Send {
        let _ = (items, ctx);
        async { None }
    }
}

impl<T: PageLeaves> OutputType for Nodes<'_, T> {
    in_schema_as_a_list_of!(T);

    async fn resolve(
        &self,
        ctx: &ContextSelectionSet<'_>,
        field: &Positioned<Field>,
    ) -> ServerResult<Value> {
        match T::page(&self.0, ctx).await {
            Some(list) => Ok(Value::List(list)),
            None => resolve_list(ctx, field, &self.0, Some(self.0.len())).await,
        }
    }
}

/// `items` as a list of objects built by [`object`], or `None` to resolve them as usual.
pub fn list<'a, T: Leaves + 'a>(
    items: impl IntoIterator<Item = &'a T>,
    selection: &SelectionSet,
) -> Option<Value> {
    Shape::of(selection)?.list(items)
}

/// `item` with the fields `selection` names, if each is a plain field (no fragment, directive
/// or argument) that `T` resolves here; `None` to resolve it as usual.
pub fn object<T: Leaves>(item: &T, selection: &SelectionSet) -> Option<Value> {
    let shape = Shape::of(selection)?;
    fill(shape.template, &shape.fields, item, |_, f| item.leaf(f))
}

/// The objects of one selection of plain fields, each built as a copy of one template whose
/// response keys were hashed once. async-graphql's objects are `IndexMap`s hashed with SipHash:
/// inserting each key of each object of a dashboard's page was 6% of its instructions, where
/// copying the template copies the keys' hashes too.
pub struct Shape<'s> {
    /// Each field, and the place of its response key in the template.
    fields: Vec<(&'s Field, usize)>,
    /// The response keys in their order, each with a null value.
    template: IndexMap<Name, Value>,
}

impl<'s> Shape<'s> {
    /// `selection`'s shape, if each of its items is a plain field (no fragment, directive or
    /// argument); `None` to resolve it as usual.
    pub fn of(selection: &'s SelectionSet) -> Option<Self> {
        let mut template = IndexMap::with_capacity(selection.items.len());
        let mut fields = Vec::with_capacity(selection.items.len());
        for s in &selection.items {
            let Selection::Field(field) = &s.node else {
                return None;
            };
            let f = &field.node;
            if !f.directives.is_empty() || !f.arguments.is_empty() {
                return None;
            }
            // A response key named twice keeps its first place, as async-graphql's merge
            // does, and the value of its last field.
            let (at, _) = template.insert_full(f.response_key().node.clone(), Value::Null);
            fields.push((f, at));
        }
        Some(Shape { fields, template })
    }

    /// `items` as a list of objects, or `None` to resolve them as usual.
    pub fn list<'a, T: Leaves + 'a>(
        &self,
        items: impl IntoIterator<Item = &'a T>,
    ) -> Option<Value> {
        let objects: Option<Vec<Value>> = items
            .into_iter()
            .map(|item| self.object(item, |_, f| item.leaf(f)))
            .collect();
        objects.map(Value::List)
    }

    /// `item`'s object, each field's value from `value`, given the field's place in the
    /// selection (`None`: not a field resolved here, and then no object).
    pub fn object<T: OutputType>(
        &self,
        item: &T,
        value: impl FnMut(usize, &Field) -> Option<Value>,
    ) -> Option<Value> {
        fill(self.template.clone(), &self.fields, item, value)
    }
}

/// `object`, a shape's template or a copy of it, with its values.
fn fill<T: OutputType>(
    mut object: IndexMap<Name, Value>,
    fields: &[(&Field, usize)],
    item: &T,
    mut value: impl FnMut(usize, &Field) -> Option<Value>,
) -> Option<Value> {
    if object.is_empty() {
        return Some(Value::Null);
    }
    for (i, &(f, at)) in fields.iter().enumerate() {
        let v = if f.name.node == "__typename" {
            Value::String(item.introspection_type_name().into_owned())
        } else {
            value(i, f)?
        };
        if let Some((_, slot)) = object.get_index_mut(at) {
            *slot = v;
        }
    }
    Some(Value::Object(object))
}

/// A string field's value.
pub fn text(s: &str) -> Value {
    Value::String(s.to_owned())
}

/// A nullable field's value.
pub fn nullable<T>(v: Option<T>, f: impl FnOnce(T) -> Value) -> Value {
    v.map_or(Value::Null, f)
}
