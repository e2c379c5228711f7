//! The component glue (wasm32 only): the WIT bindings and conversions between them and
//! the SDK's plain types. Policies never use this module directly.

pub mod bindings {
    wit_bindgen::generate!({
        path: "../wit",
        world: "policy",
        pub_export_macro: true,
        export_macro_name: "__export_policy_world",
        default_bindings_module: "rtp_policy_sdk::glue::bindings",
    });
}

use bindings::rtp::policy::types as wit;

use bindings::rtp::policy::{access_log as wit_log, blocks as wit_blocks};

use crate::{
    AccessEntry, Block, BlockKind, Call, Edit, Header, Metadata, Patient, Period, Phase,
    RecordSummary, RecordTime, RequestAction, ResponseAction, TemporaryRevoke,
};

pub use wit::{
    Call as WitCall, Metadata as WitMetadata, RecordSummary as WitRecordSummary,
    RequestAction as WitRequestAction, ResponseAction as WitResponseAction,
};

pub fn call_from_wit(c: wit::Call) -> Call {
    Call {
        route: c.route,
        contract: c.contract,
        operation: c.operation,
        logical_address: c.logical_address,
        sender: c.sender,
        original_consumer: c.original_consumer,
        acting_on_behalf_of: c.acting_on_behalf_of,
        patient: c.patient.map(|p| Patient {
            id: p.id,
            kind: p.kind,
        }),
        period: c.period.map(|p| Period {
            start: p.start,
            end: p.end,
        }),
        period_element: c.period_element,
        source_system: c.source_system,
        correlation_id: c.correlation_id,
        headers: c
            .headers
            .into_iter()
            .map(|h| Header {
                name: h.name,
                value: h.value,
            })
            .collect(),
    }
}

pub fn metadata_to_wit(m: Metadata) -> wit::Metadata {
    wit::Metadata {
        name: m.name,
        version: m.version,
        phases: m
            .phases
            .into_iter()
            .map(|p| match p {
                Phase::Request => wit::Phase::Request,
                Phase::Response => wit::Phase::Response,
            })
            .collect(),
    }
}

fn fault_to_wit(f: crate::Fault) -> wit::Fault {
    wit::Fault {
        code: f.code,
        message: f.message,
    }
}

fn period_to_wit(p: Period) -> wit::Period {
    wit::Period {
        start: p.start,
        end: p.end,
    }
}

pub fn request_action_to_wit(a: RequestAction) -> wit::RequestAction {
    match a {
        RequestAction::Proceed(edits) => wit::RequestAction::Proceed(
            edits
                .into_iter()
                .map(|e| match e {
                    Edit::SetHeader(h) => wit::Edit::SetHeader(wit::Header {
                        name: h.name,
                        value: h.value,
                    }),
                    Edit::RemoveHeader(n) => wit::Edit::RemoveHeader(n),
                    Edit::SetPeriod(p) => wit::Edit::SetPeriod(period_to_wit(p)),
                    Edit::Note(h) => wit::Edit::Note(wit::Header {
                        name: h.name,
                        value: h.value,
                    }),
                })
                .collect(),
        ),
        RequestAction::Reject(f) => wit::RequestAction::Reject(fault_to_wit(f)),
    }
}

pub fn records_from_wit(records: Vec<wit::RecordSummary>) -> Vec<RecordSummary> {
    records
        .into_iter()
        .map(|r| RecordSummary {
            index: r.index,
            id: r.id,
            care_provider: r.care_provider,
            care_unit: r.care_unit,
            times: r
                .times
                .into_iter()
                .map(|t| RecordTime {
                    field: t.field,
                    value: t.value,
                })
                .collect(),
            source_system: r.source_system,
            information_type: r.information_type,
            approved_for_patient: r.approved_for_patient,
        })
        .collect()
}

pub fn response_action_to_wit(a: ResponseAction) -> wit::ResponseAction {
    match a {
        ResponseAction::KeepAll => wit::ResponseAction::KeepAll,
        ResponseAction::Drop(indexes) => wit::ResponseAction::Drop(indexes),
        ResponseAction::Replace(f) => wit::ResponseAction::Replace(fault_to_wit(f)),
    }
}

pub fn block_from_wit(b: wit_blocks::Block) -> Block {
    Block {
        id: b.id,
        kind: match b.kind {
            wit_blocks::BlockKind::Inner => BlockKind::Inner,
            wit_blocks::BlockKind::Outer => BlockKind::Outer,
        },
        care_provider: b.care_provider,
        care_unit: b.care_unit,
        start_date: b.start_date,
        end_date: b.end_date,
        excluded_information_types: b.excluded_information_types,
        temporary_revokes: b
            .temporary_revokes
            .into_iter()
            .map(|r| TemporaryRevoke {
                revoked_for_care_unit: r.revoked_for_care_unit,
                revoked_for_employee: r.revoked_for_employee,
                end_date: r.end_date,
            })
            .collect(),
    }
}

pub fn access_entry_to_wit(e: &AccessEntry) -> wit_log::AccessEntry {
    wit_log::AccessEntry {
        user: e.user.clone(),
        care_unit: e.care_unit.clone(),
        care_provider: e.care_provider.clone(),
        activity: e.activity.clone(),
        purpose: e.purpose.clone(),
        patient_id: e.patient_id.clone(),
        owners: e
            .owners
            .iter()
            .map(|o| wit_log::Owner {
                care_provider: o.care_provider.clone(),
                care_unit: o.care_unit.clone(),
            })
            .collect(),
    }
}

/// Answer of an instance the host never initialised (a host bug): refuse, never pass.
pub fn not_initialised() -> crate::Fault {
    crate::Fault {
        code: "RTP100".into(),
        message: "policy called before init".into(),
    }
}

#[doc(hidden)]
#[macro_export]
macro_rules! __export_glue {
    ($policy:ty) => {
        struct __RtpPolicyComponent;

        ::std::thread_local! {
            static __RTP_POLICY: ::core::cell::RefCell<::core::option::Option<$policy>> =
                const { ::core::cell::RefCell::new(::core::option::Option::None) };
        }

        impl $crate::glue::bindings::Guest for __RtpPolicyComponent {
            fn describe() -> $crate::glue::WitMetadata {
                let mut metadata = <$policy as $crate::Policy>::describe();
                // The host initialises first: an instance narrows the phases to its settings.
                __RTP_POLICY.with(|slot| {
                    if let ::core::option::Option::Some(policy) = slot.borrow().as_ref() {
                        metadata.phases = $crate::Policy::phases(policy);
                    }
                });
                $crate::glue::metadata_to_wit(metadata)
            }

            fn init(settings: ::std::string::String) -> ::core::result::Result<(), ::std::string::String> {
                let policy = <$policy as $crate::Policy>::init(&settings)?;
                __RTP_POLICY.with(|slot| *slot.borrow_mut() = ::core::option::Option::Some(policy));
                ::core::result::Result::Ok(())
            }

            fn on_request(call: $crate::glue::WitCall) -> $crate::glue::WitRequestAction {
                let call = $crate::glue::call_from_wit(call);
                let action = __RTP_POLICY.with(|slot| match slot.borrow().as_ref() {
                    ::core::option::Option::Some(policy) => $crate::Policy::on_request(policy, &call),
                    ::core::option::Option::None => $crate::RequestAction::Reject($crate::glue::not_initialised()),
                });
                $crate::glue::request_action_to_wit(action)
            }

            fn on_response(
                call: $crate::glue::WitCall,
                records: ::std::vec::Vec<$crate::glue::WitRecordSummary>,
            ) -> $crate::glue::WitResponseAction {
                let call = $crate::glue::call_from_wit(call);
                let records = $crate::glue::records_from_wit(records);
                let action = __RTP_POLICY.with(|slot| match slot.borrow().as_ref() {
                    ::core::option::Option::Some(policy) => {
                        $crate::Policy::on_response(policy, &call, &records)
                    }
                    ::core::option::Option::None => $crate::ResponseAction::Replace($crate::glue::not_initialised()),
                });
                $crate::glue::response_action_to_wit(action)
            }
        }

        $crate::glue::bindings::__export_policy_world!(__RtpPolicyComponent with_types_in $crate::glue::bindings);
    };
}
