//! Simulated block service: `urn:riv:ehr:blocking:querying:GetBlocksForPatientResponder:2`.
//!
//! Answers the configured blocks of the requested patient in the
//! `BlockHeaderType` shape (riv-contracts.md §2.1): ResultCode OK and one
//! `Blocks` element per block.

use crate::config::BlockConfig;
use crate::xml::escape;

/// The GetBlocksForPatient 2 contract namespace.
pub const GET_BLOCKS_FOR_PATIENT_NS: &str =
    "urn:riv:ehr:blocking:querying:GetBlocksForPatientResponder:2";
/// Shared types of the blocking domain.
pub const BLOCKING_CORE_NS: &str = "urn:riv:ehr:blocking:2";

fn el(out: &mut String, name: &str, value: &str) {
    out.push_str(&format!("<b:{name}>{}</b:{name}>", escape(value)));
}

/// The answer (Body content) for a patient.
pub fn get_blocks_response(blocks: &[BlockConfig], patient_id: &str) -> String {
    let mut out = format!(
        "<r:GetBlocksForPatientResponse xmlns:r=\"{GET_BLOCKS_FOR_PATIENT_NS}\" xmlns:b=\"{BLOCKING_CORE_NS}\"><r:GetBlocksForPatient><b:Result><b:ResultCode>OK</b:ResultCode><b:ResultText>OK</b:ResultText></b:Result>"
    );
    for b in blocks.iter().filter(|b| b.patient_id == patient_id) {
        out.push_str("<b:Blocks>");
        el(&mut out, "BlockId", &b.block_id);
        el(&mut out, "BlockType", b.block_type.as_str());
        el(&mut out, "PatientId", &b.patient_id);
        if let Some(start) = &b.start {
            el(&mut out, "InformationStartDate", start);
        }
        if let Some(end) = &b.end {
            el(&mut out, "InformationEndDate", end);
        }
        if let Some(unit) = &b.care_unit {
            el(&mut out, "InformationCareUnitId", unit);
        }
        el(&mut out, "InformationCareProviderId", &b.care_provider);
        for info in &b.excluded_info_types {
            out.push_str("<b:ExcludedInformationTypes>");
            el(&mut out, "InfoTypeId", info);
            out.push_str("</b:ExcludedInformationTypes>");
        }
        for (i, r) in b.temporary_revokes.iter().enumerate() {
            out.push_str("<b:TemporaryRevokes>");
            el(
                &mut out,
                "TemporaryRevokeId",
                &format!("{}-revoke-{}", b.block_id, i + 1),
            );
            el(&mut out, "EndDate", &r.end_date);
            el(&mut out, "RevokedForCareUnitId", &r.care_unit);
            if let Some(emp) = &r.employee {
                el(&mut out, "RevokedForEmployeeId", emp);
            }
            el(&mut out, "OwnerId", &b.care_provider);
            out.push_str("</b:TemporaryRevokes>");
        }
        el(&mut out, "OwnerId", &b.care_provider);
        out.push_str("</b:Blocks>");
    }
    out.push_str("</r:GetBlocksForPatient></r:GetBlocksForPatientResponse>");
    out
}
