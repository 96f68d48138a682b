//! The checks, as plain `pub async fn`s over any [`StoreHarness`](crate::StoreHarness).

pub mod elector;
pub mod loss;
pub mod restart;
pub mod store;

/// Calls `$m! { ($($args)*) module::check, … }` with every check of the suite, in order.
#[doc(hidden)]
#[macro_export]
macro_rules! __for_each_check {
    ($m:path, $($args:tt)*) => {
        $m! { ($($args)*)
            store::absent_lock_reads_as_absent,
            store::create_then_get_round_trips_every_field,
            store::create_on_existing_lock_fails,
            store::update_with_current_version_succeeds,
            store::update_with_stale_version_fails,
            store::update_of_absent_lock_fails,
            store::concurrent_creates_have_one_winner,
            store::concurrent_updates_have_one_winner,
            store::read_modify_write_increments_are_not_lost,
            store::lock_names_do_not_interfere,
            store::corrupt_record_is_reported_and_left_untouched,
            store::change_notifications_deliver_each_write,
            elector::one_candidate_acquires,
            elector::five_candidates_elect_exactly_one,
            elector::crash_fails_over_within_bound,
            elector::graceful_release_hands_over_quickly,
            elector::planned_hand_over_goes_to_the_named_candidate,
            elector::failing_store_makes_the_leader_step_down,
            elector::hanging_store_makes_the_leader_step_down,
            elector::leadership_intervals_never_overlap,
            elector::fencing_tokens_strictly_increase,
            elector::rival_overwrite_is_detected_at_next_renewal,
            elector::one_identity_in_two_processes_is_never_two_leaders,
            loss::record_lost_under_a_cut_off_leader_is_not_a_free_lock,
            loss::record_lost_between_terms_still_gets_a_larger_token,
        }
    };
}

/// Expands into one `#[tokio::test]` per check (used through [`conformance_tests!`](crate::conformance_tests)).
#[doc(hidden)]
#[macro_export]
macro_rules! __emit_tests {
    (($harness:expr) $($module:ident :: $check:ident,)*) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $check() {
                let harness = $harness;
                $crate::run_check(stringify!($check), &harness).await;
            }
        )*
    };
}

macro_rules! table {
    (() $($module:ident :: $check:ident,)*) => {
        mod wrappers {
            use crate::{harness::{CheckResult, StoreHarness}, checks};
            use std::{future::Future, pin::Pin};
            $(
                pub(super) fn $check(h: &dyn StoreHarness) -> Pin<Box<dyn Future<Output = CheckResult> + Send + '_>> {
                    Box::pin(checks::$module::$check(h))
                }
            )*
        }

        use crate::checks;

        /// Every check of the suite, in the order they run.
        pub const CHECKS: &[crate::Check] = &[
            $( crate::Check { name: stringify!($check), level: checks::$module::LEVEL, run: wrappers::$check }, )*
        ];
    };
}

__for_each_check!(table,);
