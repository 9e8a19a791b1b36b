package lifecycle

import (
	"context"
	"time"
)

// Every calls fn each interval until ctx ends; the first call is one
// interval after the start. It returns at once when interval is not
// positive. Reloads and refreshes use it.
func Every(ctx context.Context, interval time.Duration, fn func(context.Context)) {
	if interval <= 0 {
		return
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			fn(ctx)
		}
	}
}
