//! Raw SQL that PostgreSQL prepares once per connection. `diesel::sql_query` and diesel's
//! multi-row inserts are never cached: each execution costs a parse, a plan and an extra
//! round trip for the prepare. The group commit's writes are fixed statements over arrays
//! (`unnest`), the same text whatever a batch holds, so they are prepared once and reused.

use diesel::{
    QueryResult,
    pg::Pg,
    query_builder::{AstPass, QueryFragment, QueryId},
    serialize::ToSql,
    sql_types::{HasSqlType, SqlType},
};
use std::marker::PhantomData;

/// A statement `sql` whose placeholders `$1`, `$2`, ... take `binds` (a tuple of [`Bind`]),
/// cached by its text.
#[derive(Debug)]
pub struct Prepared<B> {
    sql: &'static str,
    binds: B,
}

/// Builds a [`Prepared`] statement.
pub fn prepared<B: Binds>(sql: &'static str, binds: B) -> Prepared<B> {
    Prepared { sql, binds }
}

/// One parameter: `value` as SQL type `ST`.
#[derive(Debug)]
pub struct Bind<ST, T> {
    value: T,
    ty: PhantomData<ST>,
}

/// A parameter of SQL type `ST`.
pub fn bind<ST, T>(value: T) -> Bind<ST, T> {
    Bind {
        value,
        ty: PhantomData,
    }
}

/// The parameters of a [`Prepared`] statement, by position.
pub trait Binds {
    /// Pushes parameter `i` (0-based); an error when there is none.
    fn push<'b>(&'b self, i: usize, out: AstPass<'_, 'b, Pg>) -> QueryResult<()>;
}

macro_rules! binds {
    ($($n:tt $t:ident $s:ident),+) => {
        impl<$($s, $t),+> Binds for ($(Bind<$s, $t>,)+)
        where
            $($s: SqlType + diesel::sql_types::SingleValue, Pg: HasSqlType<$s>, $t: ToSql<$s, Pg>,)+
        {
            fn push<'b>(&'b self, i: usize, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
                match i {
                    $($n => out.push_bind_param::<$s, $t>(&self.$n.value),)+
                    _ => Err(diesel::result::Error::QueryBuilderError(
                        format!("no parameter ${}", i + 1).into(),
                    )),
                }
            }
        }
    };
}
binds!(0 T0 S0, 1 T1 S1, 2 T2 S2);
binds!(0 T0 S0, 1 T1 S1, 2 T2 S2, 3 T3 S3);
binds!(0 T0 S0, 1 T1 S1, 2 T2 S2, 3 T3 S3, 4 T4 S4);
binds!(0 T0 S0, 1 T1 S1, 2 T2 S2, 3 T3 S3, 4 T4 S4, 5 T5 S5, 6 T6 S6, 7 T7 S7);

impl<B: Binds> QueryFragment<Pg> for Prepared<B> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        // Each `$n` of the text becomes the next bind parameter, taking parameter n.
        let mut rest = self.sql;
        while let Some(at) = rest.find('$') {
            out.push_sql(&rest[..at]);
            let digits = rest[at + 1..]
                .find(|c: char| !c.is_ascii_digit())
                .unwrap_or(rest.len() - at - 1);
            let n = rest[at + 1..at + 1 + digits]
                .parse::<usize>()
                .ok()
                .and_then(|n| n.checked_sub(1))
                .ok_or_else(|| {
                    diesel::result::Error::QueryBuilderError(
                        format!("a $ without a parameter number in {}", self.sql).into(),
                    )
                })?;
            self.binds.push(n, out.reborrow())?;
            rest = &rest[at + 1 + digits..];
        }
        out.push_sql(rest);
        Ok(())
    }
}

// No static id: diesel caches the statement by its text (and parameter types).
impl<B> QueryId for Prepared<B> {
    type QueryId = ();
    const HAS_STATIC_QUERY_ID: bool = false;
}
