// Package backbone is Customs' event backbone on NATS JetStream: the
// ARTIFACTS stream, publishing with dedup ids and trace headers, and durable
// pull consumers with one place that classifies handler errors.
package backbone

import (
	"fmt"

	customsv1 "github.com/customs-dev/customs/gen/go/customs/v1"
)

// Stream and subject names. Durable consumer names are constants in each
// service and must never change, or the consumer replays everything.
const (
	StreamArtifacts  = "ARTIFACTS"
	SubjectAll       = "artifact.>"
	SubjectPushed    = "artifact.pushed"
	SubjectScanned   = "artifact.scanned"
	SubjectSigned    = "artifact.signed"
	SubjectPromoted  = "artifact.promoted"
	SubjectRejected  = "artifact.rejected"
	SubjectFailed    = "artifact.failed"
	StreamDeadLetter = "DEADLETTER"
	// SubjectDeadLetterPrefix is followed by the consumer name.
	SubjectDeadLetterPrefix = "deadletter."
	// SubjectPromotionCommand carries Promote and Rollback commands to the
	// promotion service (core NATS request/reply, not a stream): a
	// customsv1.PromotionCommand, answered by a PromotionCommandResult.
	SubjectPromotionCommand = "customs.cmd.promotion"
)

// SubjectFor returns the subject an event is published on, derived from its
// payload so that the subject and the content can never disagree.
func SubjectFor(evt *customsv1.Event) (string, error) {
	switch evt.GetPayload().(type) {
	case *customsv1.Event_Pushed:
		return SubjectPushed, nil
	case *customsv1.Event_Scanned:
		return SubjectScanned, nil
	case *customsv1.Event_Signed:
		return SubjectSigned, nil
	case *customsv1.Event_Promoted:
		return SubjectPromoted, nil
	case *customsv1.Event_Rejected:
		return SubjectRejected, nil
	case *customsv1.Event_Failed:
		return SubjectFailed, nil
	default:
		return "", fmt.Errorf("%w: event %q has no payload", ErrInvalidEvent, evt.GetId())
	}
}
