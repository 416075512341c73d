//! Every statement of this crate goes through [`Sql`]: sent **unnamed**, with its parameters' types
//! given (the extended protocol's unnamed statement, one round trip), never prepared under a name.
//! A named prepared statement lives on one server connection; behind a transaction-pooling proxy
//! (PgBouncer `pool_mode = transaction`) the next statement may run on another connection, where it
//! does not exist. Unnamed statements make the store work there too.
//!
//! Each parameter's PostgreSQL type comes from its Rust type ([`Param`]); a statement casts where it
//! needs another (`$1::int4`).

use std::time::SystemTime;

use async_trait::async_trait;
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{Error, GenericClient, Row};

/// A statement parameter and the PostgreSQL type it is sent as.
pub(crate) trait Param: Sync {
    /// The type the server is told the parameter has.
    fn pg_type(&self) -> Type;
    /// The value, to encode.
    fn value(&self) -> &(dyn ToSql + Sync);
}

macro_rules! param {
    ($($t:ty => $pg:expr),* $(,)?) => {
        $(
            impl Param for $t {
                fn pg_type(&self) -> Type {
                    $pg
                }
                fn value(&self) -> &(dyn ToSql + Sync) {
                    self
                }
            }
            // a NULL is sent with the type its value would have
            impl Param for Option<$t> {
                fn pg_type(&self) -> Type {
                    $pg
                }
                fn value(&self) -> &(dyn ToSql + Sync) {
                    self
                }
            }
        )*
    };
}

param! {
    bool => Type::BOOL,
    i16 => Type::INT2,
    i32 => Type::INT4,
    i64 => Type::INT8,
    f64 => Type::FLOAT8,
    String => Type::TEXT,
    &str => Type::TEXT,
    SystemTime => Type::TIMESTAMPTZ,
    serde_json::Value => Type::JSONB,
    Vec<String> => Type::TEXT_ARRAY,
    &[String] => Type::TEXT_ARRAY,
    Vec<&str> => Type::TEXT_ARRAY,
    &[&str] => Type::TEXT_ARRAY,
    Vec<i64> => Type::INT8_ARRAY,
    &[i64] => Type::INT8_ARRAY,
    Vec<i32> => Type::INT4_ARRAY,
    Vec<u8> => Type::BYTEA,
    &[u8] => Type::BYTEA,
}

impl<T: Param + ?Sized> Param for &T {
    fn pg_type(&self) -> Type {
        (**self).pg_type()
    }
    fn value(&self) -> &(dyn ToSql + Sync) {
        (**self).value()
    }
}

fn typed<'a>(params: &'a [&'a dyn Param]) -> Vec<(&'a (dyn ToSql + Sync), Type)> {
    params.iter().map(|p| (p.value(), p.pg_type())).collect()
}

/// Statements on a connection or in a transaction, sent unnamed (see the module's documentation).
/// `params` are `&[&a, &b]` as with tokio-postgres's own methods.
#[async_trait]
pub(crate) trait Sql {
    /// Every row the statement returns.
    async fn rows(&self, sql: &str, params: &[&dyn Param]) -> Result<Vec<Row>, Error>;
    /// Exactly one row (an error otherwise).
    async fn one(&self, sql: &str, params: &[&dyn Param]) -> Result<Row, Error>;
    /// At most one row (an error when there are more).
    async fn opt(&self, sql: &str, params: &[&dyn Param]) -> Result<Option<Row>, Error>;
    /// How many rows the statement changed.
    async fn exec(&self, sql: &str, params: &[&dyn Param]) -> Result<u64, Error>;
}

#[async_trait]
impl<C: GenericClient + Sync> Sql for C {
    async fn rows(&self, sql: &str, params: &[&dyn Param]) -> Result<Vec<Row>, Error> {
        self.query_typed(sql, &typed(params)).await
    }
    async fn one(&self, sql: &str, params: &[&dyn Param]) -> Result<Row, Error> {
        self.query_typed_one(sql, &typed(params)).await
    }
    async fn opt(&self, sql: &str, params: &[&dyn Param]) -> Result<Option<Row>, Error> {
        self.query_typed_opt(sql, &typed(params)).await
    }
    async fn exec(&self, sql: &str, params: &[&dyn Param]) -> Result<u64, Error> {
        self.execute_typed(sql, &typed(params)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_parameter_is_sent_with_its_type_and_a_null_with_its_values_type() {
        let name = String::from("web");
        let host: &str = "web-01";
        let n = 7_i64;
        let none: Option<&str> = None;
        let groups = vec!["ops".to_owned()];
        let params: [&dyn Param; 5] = [&name, &host, &n, &none, &groups];
        let types: Vec<Type> = typed(&params).into_iter().map(|(_, t)| t).collect();
        assert_eq!(
            types,
            [
                Type::TEXT,
                Type::TEXT,
                Type::INT8,
                Type::TEXT,
                Type::TEXT_ARRAY
            ]
        );
        // a reference to a parameter is the parameter
        let r = &n;
        let params: [&dyn Param; 1] = [&r];
        assert_eq!(typed(&params)[0].1, Type::INT8);
    }
}
