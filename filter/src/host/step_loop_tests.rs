//! The step loop's decisions, natively: whether a request waiting for
//! documents parks or is answered, what it waits for, what an answer counts
//! as, and which wait a delivered answer records.

use super::*;
use portcullis_core::shared_callout::ShareKey;

fn status(step: &Step) -> u16 {
    match step {
        Step::Respond(r) => r.status,
        other => panic!("expected an answer, got {other:?}"),
    }
}

#[test]
fn a_request_waiting_for_keys_or_its_idp_parks_until_the_deadline() {
    let cases = [
        (
            Step::WaitForKeys { source: 3 },
            0,
            Wait::Keys {
                source: 3,
                deadline: 42.0,
            },
        ),
        (
            Step::WaitForIdp { filter: 1 },
            9,
            Wait::Idp {
                filter: 1,
                deadline: 42.0,
            },
        ),
    ];
    for (step, parked, wait) in cases {
        assert_eq!(document_wait(&step, true, parked, 10, 42.0), Some(wait));
    }
}

#[test]
fn a_request_is_answered_at_once_without_a_fetch_under_way_or_past_the_bound() {
    let keys = Step::WaitForKeys { source: 0 };
    // The last fetch failed: nothing to wait for.
    assert_eq!(document_wait(&keys, false, 0, 10, 1.0), None);
    // As many parked as the bound allows: the next one is not.
    assert_eq!(document_wait(&keys, true, 10, 10, 1.0), None);
    // Any other step never parks here.
    assert_eq!(
        document_wait(&Step::Continue(Vec::new()), true, 0, 10, 1.0),
        None
    );
}

#[test]
fn a_request_that_could_not_park_gets_the_journeys_answer_or_503() {
    assert_eq!(status(&unparked(Step::WaitForKeys { source: 0 })), 503);
    assert_eq!(status(&unparked(Step::WaitForIdp { filter: 0 })), 503);
    let denied = Step::Respond(Response::json_error(401, "no token"));
    assert_eq!(status(&unparked(denied)), 401);
    let forwarded = unparked(Step::Continue(Vec::new()));
    assert_eq!(forwarded, Step::Continue(Vec::new()));
}

#[test]
fn no_answer_a_5xx_or_a_grpc_error_counts_as_a_failed_callout() {
    let http = |status| CalloutAnswer::Http {
        status,
        headers: Vec::new(),
        body: Vec::new(),
    };
    let grpc = |status_code| CalloutAnswer::Grpc {
        status_code,
        message: Vec::new(),
    };
    assert!(callout_failed(&CalloutAnswer::Failed {
        reason: "timeout".into()
    }));
    assert!(callout_failed(&http(500)));
    assert!(callout_failed(&http(503)));
    assert!(!callout_failed(&http(200)));
    assert!(!callout_failed(&http(403)));
    assert!(callout_failed(&grpc(14)));
    assert!(!callout_failed(&grpc(0)));
}

#[test]
fn a_delivered_answer_records_its_callouts_latency_or_its_shared_wait() {
    assert_eq!(
        wait_metric(Wait::Callout { since: 5.0 }),
        Some((Metric::CalloutLatency, 5.0))
    );
    let key = ShareKey::of(&[b"a refresh token"]);
    assert_eq!(
        wait_metric(Wait::Shared { key, since: 7.0 }),
        Some((Metric::SharedCalloutWait, 7.0))
    );
    assert_eq!(
        wait_metric(Wait::Keys {
            source: 0,
            deadline: 1.0
        }),
        None
    );
    assert_eq!(
        wait_metric(Wait::Body {
            max_bytes: 10,
            headers_held: false,
            probe_until: None,
        }),
        None
    );
}

#[test]
fn a_callouts_latency_is_recorded_in_microseconds_and_a_shared_wait_in_milliseconds() {
    // 0.3 ms: what a loopback auth service takes; milliseconds would say 0.
    assert_eq!(elapsed_in(Metric::CalloutLatency, 0.0003), 300);
    assert_eq!(elapsed_in(Metric::CalloutLatency, 1.5), 1_500_000);
    assert_eq!(elapsed_in(Metric::SharedCalloutWait, 0.042), 42);
    // A clock that stepped back records 0, never a wrapped value.
    assert_eq!(elapsed_in(Metric::CalloutLatency, -0.5), 0);
}
