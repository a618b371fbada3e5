//! The callouts the VMs of one Envoy share (`Callout::share`): a slot per key
//! in Envoy's shared data, claimed and settled by compare-and-swap
//! (`portcullis_core::shared_callout` decides what a slot says), and read
//! again on the tick by the requests waiting on another VM's callout.

use super::metrics::Metric;
use super::vm_state::{now, VmState, Wait, FAST_TICK, TICK};
use portcullis_core::callout::CalloutAnswer;
use portcullis_core::shared_callout::{Consult, ShareKey};
use proxy_wasm::hostcalls;
use std::collections::BTreeMap;

/// Compare-and-swap attempts on a shared slot before giving up on it.
const CAS_ATTEMPTS: usize = 16;

/// What a request does with a shared callout.
pub(super) enum SharedTurn {
    /// Another request's answer.
    Answered(CalloutAnswer),
    /// Another request's callout is in flight.
    Wait,
    /// This request sends it (its claim is written, or shared data failed).
    Mine,
}

/// Reads the key's slot in the host's shared data and claims the callout when
/// nobody has it (compare-and-swap; read again on a mismatch).
pub(super) fn claim_shared(vm: &VmState, key: &ShareKey) -> SharedTurn {
    let name = vm.shared_callouts.slot_name(key);
    for _ in 0..CAS_ATTEMPTS {
        let (bytes, cas) = match hostcalls::get_shared_data(&name) {
            Ok(found) => found,
            Err(status) => {
                log::warn!("shared data {name} unreadable ({status:?}): calling out alone");
                return SharedTurn::Mine;
            }
        };
        match vm.shared_callouts.consult(bytes.as_deref(), key, now()) {
            Consult::Answered(answer) => return SharedTurn::Answered(answer),
            Consult::InFlight => return SharedTurn::Wait,
            Consult::Claim(claimed) => {
                match hostcalls::set_shared_data(&name, Some(&claimed), cas) {
                    Ok(()) => return SharedTurn::Mine,
                    Err(proxy_wasm::types::Status::CasMismatch) => continue,
                    Err(status) => {
                        log::warn!("shared data {name} unwritable ({status:?}): calling out alone");
                        return SharedTurn::Mine;
                    }
                }
            }
        }
    }
    // Other VMs keep writing the slot: wait, and read it again on the tick.
    SharedTurn::Wait
}

/// Writes every slot that does not exist yet, empty. Envoy's shared data has
/// no compare-and-swap on a key it has not seen (a write to a missing key
/// always succeeds), so two VMs could both claim a callout in a never-written
/// slot; written at configure time, every later claim is a real CAS.
pub fn init_shared_slots(vm: &VmState) {
    if !vm
        .config
        .filters
        .iter()
        .any(|f| matches!(f.kind, portcullis_core::config::FilterKind::OAuth2(_)))
    {
        return;
    }
    for slot in 0..vm.shared_callouts.slots() {
        let name = vm.shared_callouts.slot_name_of(slot);
        if let Ok((None, _)) = hostcalls::get_shared_data(&name) {
            let _ = hostcalls::set_shared_data(&name, Some(b""), None);
        }
    }
}

/// Keeps a shared callout's answer in its slot for the requests waiting on it
/// (this VM's and the others'); false when the slot could not be written.
pub(super) fn settle_shared(vm: &VmState, key: &ShareKey, answer: &CalloutAnswer) -> bool {
    let name = vm.shared_callouts.slot_name(key);
    for _ in 0..CAS_ATTEMPTS {
        let Ok((bytes, cas)) = hostcalls::get_shared_data(&name) else {
            break;
        };
        let settled = vm
            .shared_callouts
            .settle(bytes.as_deref(), key, answer, now());
        match hostcalls::set_shared_data(&name, Some(&settled), cas) {
            Ok(()) => return true,
            Err(proxy_wasm::types::Status::CasMismatch) => continue,
            Err(_) => break,
        }
    }
    log::warn!("shared data {name}: could not keep a shared answer; other workers wait for it until it is stale");
    false
}

/// The requests of this VM waiting on a shared callout whose key matches.
pub(super) fn shared_waiters(vm: &VmState, matches: impl Fn(ShareKey) -> bool) -> Vec<u32> {
    vm.pending
        .borrow()
        .iter()
        .filter_map(|(id, p)| match p.wait {
            Wait::Shared { key, .. } if matches(key) => Some(*id),
            _ => None,
        })
        .collect()
}

/// On the tick: the requests waiting on another VM's shared callout read its
/// slot again. Returns the answers to deliver, by context id: those answered,
/// and those waiting longer than `max_wait` seconds (its VM went away) fail as
/// an unanswered callout would.
pub fn poll_shared(vm: &VmState, max_wait: f64) -> Vec<(u32, CalloutAnswer)> {
    let waiting: Vec<(u32, ShareKey, f64)> = vm
        .pending
        .borrow()
        .iter()
        .filter_map(|(id, p)| match p.wait {
            Wait::Shared { key, since } => Some((*id, key, since)),
            _ => None,
        })
        .collect();
    if waiting.is_empty() {
        set_fast_tick(vm, false);
        return Vec::new();
    }
    let mut answers = Vec::new();
    let now = now();
    // One read per slot, however many requests wait on it.
    let mut slots: BTreeMap<String, Option<Vec<u8>>> = BTreeMap::new();
    for (id, key, since) in waiting {
        let name = vm.shared_callouts.slot_name(&key);
        let bytes = slots.entry(name).or_insert_with_key(|name| {
            hostcalls::get_shared_data(name)
                .ok()
                .and_then(|(bytes, _)| bytes)
        });
        let consult = vm.shared_callouts.consult(bytes.as_deref(), &key, now);
        match polled(consult, now - since, max_wait) {
            Polled::Answered(answer) => {
                vm.metrics.count(&vm.config, Metric::SharedCalloutReused);
                answers.push((id, answer));
            }
            Polled::InFlight => {}
            Polled::Unanswered => {
                let answer = CalloutAnswer::Failed {
                    reason: "the shared callout got no answer".to_string(),
                };
                answers.push((id, answer));
            }
        }
    }
    answers
}

/// What a request waiting on a shared callout does after reading its slot.
#[derive(Debug, PartialEq)]
enum Polled {
    /// The callout's answer: the request goes on with it.
    Answered(CalloutAnswer),
    /// Still in flight: read again on the next tick.
    InFlight,
    /// Waited `max_wait` already (its VM went away without answering), or the
    /// answer is gone from the slot (evicted) before this VM read it: the
    /// request goes on as with an unanswered callout.
    Unanswered,
}

/// What the slot's `consult` means for a request that has waited `waited`
/// seconds of at most `max_wait`.
fn polled(consult: Consult, waited: f64, max_wait: f64) -> Polled {
    match consult {
        Consult::Answered(answer) => Polled::Answered(answer),
        Consult::InFlight if waited <= max_wait => Polled::InFlight,
        _ => Polled::Unanswered,
    }
}

/// Runs the tick at `FAST_TICK` while requests wait on a shared callout.
pub fn set_fast_tick(vm: &VmState, fast: bool) {
    if vm.fast_tick.get() == fast {
        return;
    }
    let period = if fast { FAST_TICK } else { TICK };
    if hostcalls::set_tick_period(period).is_ok() {
        vm.fast_tick.set(fast);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer() -> CalloutAnswer {
        CalloutAnswer::Http {
            status: 200,
            headers: Vec::new(),
            body: b"{}".to_vec(),
        }
    }

    #[test]
    fn a_waiter_goes_on_with_the_answer_in_the_slot() {
        assert_eq!(
            polled(Consult::Answered(answer()), 99.0, 1.0),
            Polled::Answered(answer())
        );
    }

    #[test]
    fn a_waiter_reads_again_while_in_flight_and_gives_up_past_max_wait() {
        assert_eq!(polled(Consult::InFlight, 0.5, 1.0), Polled::InFlight);
        assert_eq!(polled(Consult::InFlight, 1.0, 1.0), Polled::InFlight);
        assert_eq!(polled(Consult::InFlight, 1.01, 1.0), Polled::Unanswered);
    }

    #[test]
    fn a_slot_whose_answer_is_gone_fails_the_waiter() {
        // The slot would let a new claim in: nobody holds the callout now.
        assert_eq!(
            polled(Consult::Claim(Vec::new()), 0.1, 1.0),
            Polled::Unanswered
        );
    }
}
