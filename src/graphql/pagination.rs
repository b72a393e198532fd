//! Relay cursor connections: opaque cursors over (sort key, id), page size checked against the
//! configured cap.

use async_graphql::{Enum, SimpleObject};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

use crate::error::{Error, FieldError};
use crate::storage::queries::{After, PageRequest, SortDir};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum, Default)]
pub enum SortDirection {
    #[default]
    Asc,
    Desc,
}

impl From<SortDirection> for SortDir {
    fn from(d: SortDirection) -> Self {
        match d {
            SortDirection::Asc => SortDir::Asc,
            SortDirection::Desc => SortDir::Desc,
        }
    }
}

#[derive(SimpleObject, Debug, Clone)]
#[graphql(serial)]
pub struct PageInfo {
    pub has_next_page: bool,
    /// Always false: these connections page forwards only.
    pub has_previous_page: bool,
    pub start_cursor: Option<String>,
    pub end_cursor: Option<String>,
}

pub fn encode_cursor(key: &str, id: &str) -> String {
    let json = serde_json::to_vec(&(key, id)).unwrap_or_default();
    URL_SAFE_NO_PAD.encode(json)
}

/// What a row's cursor encodes, kept as it is until a client asks for the cursor: most pages
/// are read through `nodes`, and only the page's first and last cursors are encoded for its
/// `PageInfo`.
#[derive(Debug, Clone)]
pub struct CursorOf {
    key: String,
    id: String,
}

impl CursorOf {
    pub fn encode(&self) -> String {
        encode_cursor(&self.key, &self.id)
    }
}

fn decode_cursor(cursor: &str) -> Option<After> {
    let bytes = URL_SAFE_NO_PAD.decode(cursor.as_bytes()).ok()?;
    let (key, id): (String, String) = serde_json::from_slice(&bytes).ok()?;
    // Keys are titles, names or dates, ids at most 100 characters: anything else is no cursor
    // of ours, and the database must not see a NUL.
    if key.contains('\0') || id.contains('\0') || key.len() > 4_000 || id.len() > 200 {
        return None;
    }
    Some(After { key, id })
}

/// Page size limits from the configuration.
#[derive(Debug, Clone, Copy)]
pub struct PageLimits {
    pub default: usize,
    pub max: usize,
}

/// Checks `first` and `after` and asks storage for one row more than the page, to learn whether
/// another page follows.
pub fn page_request(
    limits: PageLimits,
    first: Option<i32>,
    after: Option<String>,
    direction: SortDirection,
) -> Result<(PageRequest, usize), Error> {
    let size = match first {
        None => limits.default,
        Some(n) if n >= 0 && (n as usize) <= limits.max => n as usize,
        Some(n) => {
            return Err(Error::Invalid(vec![FieldError::new(
                "first",
                format!("must be between 0 and {} (got {n})", limits.max),
            )]))
        }
    };
    let after = match after {
        None => None,
        Some(c) => Some(decode_cursor(&c).ok_or_else(|| {
            Error::Invalid(vec![FieldError::new(
                "after",
                "not a cursor from this connection",
            )])
        })?),
    };
    Ok((
        PageRequest {
            after,
            limit: size as i64 + 1,
            dir: direction.into(),
        },
        size,
    ))
}

/// Splits a result of `size + 1` rows into the page and its `PageInfo`.
pub fn finish_page<T>(
    mut rows: Vec<(String, T)>,
    size: usize,
    id_of: impl Fn(&T) -> &str,
) -> (Vec<(CursorOf, T)>, PageInfo) {
    let has_next_page = rows.len() > size;
    rows.truncate(size);
    let cursors: Vec<(CursorOf, T)> = rows
        .into_iter()
        .map(|(key, item)| {
            let id = id_of(&item).to_owned();
            (CursorOf { key, id }, item)
        })
        .collect();
    let info = PageInfo {
        has_next_page,
        has_previous_page: false,
        start_cursor: cursors.first().map(|(c, _)| c.encode()),
        end_cursor: cursors.last().map(|(c, _)| c.encode()),
    };
    (cursors, info)
}

/// Declares a Relay connection and its edge for a node type. `totalCount` runs only when asked,
/// with the same filter (and so the same visibility) as the page.
macro_rules! connection_types {
    ($conn:ident, $edge:ident, $node:ident, $query:ty, $count:path) => {
        pub struct $edge {
            cursor: $crate::graphql::pagination::CursorOf,
            node: $node,
        }

        #[async_graphql::Object(serial)]
        impl $edge {
            async fn cursor(&self) -> String {
                self.cursor.encode()
            }
            async fn node(&self) -> &$node {
                &self.node
            }
        }

        pub struct $conn {
            edges: Vec<$edge>,
            page_info: $crate::graphql::pagination::PageInfo,
            query: $query,
        }

        impl $conn {
            fn new<T>(
                rows: Vec<(String, T)>,
                size: usize,
                query: $query,
                id_of: impl Fn(&T) -> &str,
                wrap: impl Fn(T) -> $node,
            ) -> Self {
                let (page, page_info) = $crate::graphql::pagination::finish_page(rows, size, id_of);
                let edges = page
                    .into_iter()
                    .map(|(cursor, item)| $edge {
                        cursor,
                        node: wrap(item),
                    })
                    .collect();
                $conn {
                    edges,
                    page_info,
                    query,
                }
            }
        }

        #[async_graphql::Object]
        impl $conn {
            async fn edges(&self) -> &[$edge] {
                &self.edges
            }
            /// The nodes of `edges`, for clients that do not need cursors.
            async fn nodes(&self) -> $crate::graphql::leaves::Nodes<'_, $node> {
                $crate::graphql::leaves::Nodes(self.edges.iter().map(|e| &e.node).collect())
            }
            async fn page_info(&self) -> &$crate::graphql::pagination::PageInfo {
                &self.page_info
            }
            /// How many records match the filter, across all pages.
            async fn total_count(
                &self,
                ctx: &async_graphql::Context<'_>,
            ) -> async_graphql::Result<i64> {
                let q = self.query.clone();
                Ok($crate::graphql::context::request(ctx)?
                    .read(move |c, rf| $count(c, rf, &q))
                    .await?)
            }
        }
    };
}

pub(crate) use connection_types;
