//! How inputs and persisted batches enter the trace.

use plait_kernel::{Input, NodeId, Time};

use crate::trace::Trace;

/// A batch as the trace hashes it. openmls's stored values carry wall-clock timestamps, written
/// as JSON numbers of varying length, so two runs of a seed can persist different MLS bytes (and
/// byte counts) while sending identical wire bytes; the trace keeps each MLS key and whether it
/// was written or deleted, and every other record whole. No simulator decision reads MLS values
/// (see ARCHITECTURE.md).
pub(super) fn trace_form(batch: &plait_kernel::WriteBatch) -> plait_kernel::WriteBatch {
    use plait_kernel::Record;
    let records = batch
        .records
        .iter()
        .map(|record| match record {
            Record::MlsState { group, key, value } => {
                Record::MlsState { group: *group, key: key.clone(), value: value.as_ref().map(|_| Vec::new()) }
            }
            other => other.clone(),
        })
        .collect();
    plait_kernel::WriteBatch { records }
}

pub(super) fn record_input(trace: &mut Trace, now: Time, id: NodeId, kind: u8, input: &Input) {
    match input {
        Input::Received { frame, .. } => trace.record(now, id, kind, frame),
        Input::Timer => trace.record(now, id, kind, &[]),
        other => {
            let bytes = postcard::to_allocvec(other).expect("inputs encode");
            trace.record(now, id, kind, &bytes);
        }
    }
}

pub(super) fn describe_input(input: &Input) -> String {
    match input {
        Input::Received { from, frame } => match plait_kernel::wire::decode(frame, usize::MAX) {
            Ok(envelope) => format!("{from} {:?}", envelope.message),
            Err(error) => format!("{from} garbage ({error})"),
        },
        other => format!("{other:?}"),
    }
}
