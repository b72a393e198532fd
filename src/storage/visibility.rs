//! The visibility policy as SQL. `visible_to!(table, &row_filter)` is the predicate every read
//! of a partner-owned table carries; it is the SQL twin of `RowFilter::allows` and the two are
//! tested against each other (tests/visibility.rs).

/// Live rows the filter allows: public ones, the viewer's own, and `partners` rows of partners
/// that share with the viewer.
macro_rules! visible_to {
    ($table:ident, $filter:expr) => {{
        let rf: &$crate::domain::RowFilter = $filter;
        $table::retired_at.is_null().and(
            $table::visibility
                .eq("public")
                // An empty partner id matches no row: anonymous viewers own nothing.
                .or($table::owner_partner_id.eq(rf.own.clone().unwrap_or_default()))
                .or($table::visibility
                    .eq("partners")
                    .and($table::owner_partner_id.eq_any(rf.shared_by.clone()))),
        )
    }};
}

pub(crate) use visible_to;
