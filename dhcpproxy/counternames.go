package dhcpproxy

import (
	"slices"

	"github.com/ispmux/ispmux/subscribers"
)

// CounterNames returns the names [Proxy.Counters] can hold (a counter
// appears there at its first count), sorted; events_suppressed is left
// out. Package metrics exports each from the start, 0 included, so that
// rate() and increase() see a decision's first count.
func CounterNames() []string {
	out := []string{
		"ack",
		"ack_after_discover",
		"ack_after_end",
		"ack_inform",
		"ack_other_server",
		"ack_refused_not_released",
		"ack_refused_released",
		"ack_registration_changed",
		"ack_unusable_address",
		"ack_without_address",
		"ack_without_lease_time",
		"arp_not_probe_answer",
		"bind_conflict",
		"binding_revoked",
		"blocked_subscriber",
		"circuit_full",
		"client_id_taken",
		"decline_limited",
		"decline_not_own_address",
		"decline_other_server",
		"declined_for_subscriber",
		"expired",
		"expiry_superseded",
		"handover_failed",
		"handover_failed_" + HandoverRefused,
		"handover_failed_" + HandoverUnanswered,
		"handover_failure_restored",
		"handover_fallback_full",
		"handover_nak",
		"handover_retry",
		"handover_retry_asked",
		"icmp_unreachable_no_transaction",
		"icmp_unreachable_other",
		"icmp_unreachable_short",
		"inform_unanswered",
		"inject_full",
		"intent_deferred",
		"intent_replayed",
		"intent_superseded",
		"lease_not_in_store",
		"malformed_frame",
		"move_cut",
		"move_nak",
		"move_pending",
		"moved_circuit",
		"moved_circuit_probe_answered",
		"moved_circuit_probe_silent",
		"moved_circuit_probe_skipped",
		"moved_circuit_probe_unsent",
		"moved_circuit_refused",
		"moved_circuit_withdrawn",
		"nak",
		"nak_after_discover",
		"nak_not_request",
		"nak_sent",
		"no_access_address",
		"no_isp_server",
		"no_next_hop",
		"no_next_hop_startup",
		"no_transaction",
		"not_for_us",
		"offer",
		"offer_other_server",
		"offer_without_lease_time",
		"offer_without_server_id",
		"onboarding_bind_conflict",
		"onboarding_bind_failed",
		"onboarding_commit_lost",
		"onboarding_decline_not_own",
		"onboarding_full",
		"onboarding_grant",
		"onboarding_handover_nak",
		"onboarding_ignored",
		"onboarding_inform",
		"onboarding_moved_refused",
		"onboarding_nak",
		"onboarding_offer",
		"onboarding_offer_declined",
		"onboarding_other_server",
		"onboarding_rate_limited",
		"onboarding_release_not_own",
		"onboarding_renewal",
		"onboarding_reply_error",
		"option82_too_long",
		"pending_full",
		"rapid_commit_extra_ack",
		"rapid_commit_not_released",
		"rapid_commit_released",
		"rate_limited",
		"relay_after_end",
		"relay_after_pending_intent",
		"relay_too_big",
		"release_not_own_address",
		"release_other_server",
		"renewal_local",
		"renewal_local_after_silence",
		"renewal_local_too_big",
		"renewal_relayed",
		"renewed",
		"replaced_not_released",
		"replaced_released",
		"reply_options_truncated",
		"reply_repacked",
		"reply_too_big",
		"reply_too_big_not_released",
		"reply_too_big_released",
		"request_nak",
		"request_other_server",
		"server_direct_unexpected",
		"server_unexpected_type",
		"server_unreachable",
		"static_subscriber",
		"store_error",
		"suspended_customer",
		"switch_held",
		"timeout",
		"transactions_dropped_at_end",
		"udp_bad_checksum",
		"unknown_server",
		"unknown_subscriber",
		"waited_for_next_hop",
		"wrong_circuit",
		"rate_limited_mac", "rate_limited_circuit",
	}
	for _, e := range []error{errMalformed, errVSSUnsupported, errNotRequest, errChaddr, errClientOption82, errClientGiaddr,
		errOverload, errNoMessageType, errNotClientType, errHops, errServerMalformed, errNotReply, errOption82} {
		out = append(out, e.Error())
	}
	for _, k := range []subscribers.IntentKind{subscribers.IntentRelease, subscribers.IntentDecline, subscribers.IntentReleaseUnbound} {
		out = append(out, "intent_sent_"+string(k))
	}
	for _, r := range onboardingEndReasons {
		out = append(out, "onboarding_end_"+r)
	}
	for _, mt := range []string{"discover", "request", "release", "decline", "inform"} {
		out = append(out, "relayed_"+mt)
	}
	slices.Sort(out)
	return slices.Compact(out)
}
