package backbone

import (
	"errors"
	"fmt"
)

// ErrInvalidEvent is returned for an event that cannot be published or
// handled because it is malformed. It is terminal.
var ErrInvalidEvent = errors.New("invalid event")

// ErrUnavailable is returned when JetStream does not acknowledge a publish in
// time. Callers at an HTTP edge answer 503 so the sender retries.
var ErrUnavailable = errors.New("event backbone unavailable")

// TerminalError marks an error that no retry can fix: bad input, or a
// decision such as a policy rejection. The consumer terminates the message
// and records it on the dead-letter subject instead of redelivering it.
type TerminalError struct {
	Err error
}

func (e *TerminalError) Error() string { return "terminal: " + e.Err.Error() }
func (e *TerminalError) Unwrap() error { return e.Err }

// Terminal wraps err so the consumer will not retry it. Terminal(nil) is nil.
func Terminal(err error) error {
	if err == nil {
		return nil
	}
	return &TerminalError{Err: err}
}

// Terminalf is fmt.Errorf for terminal errors.
func Terminalf(format string, args ...any) error {
	return Terminal(fmt.Errorf(format, args...))
}

// IsTerminal reports whether err, or anything it wraps, is terminal.
// ErrInvalidEvent is always terminal.
func IsTerminal(err error) bool {
	var te *TerminalError
	return errors.As(err, &te) || errors.Is(err, ErrInvalidEvent)
}
