// Package devregistry runs a CNCF Distribution v3 registry in-process, with
// its notifications aimed at Customs ingest. The one-process runtime serves
// it as the development registry, and tests use it as a real registry.
package devregistry

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/distribution/distribution/v3/configuration"
	"github.com/distribution/distribution/v3/registry/handlers"
	"github.com/sirupsen/logrus"

	// Storage drivers register themselves when imported.
	_ "github.com/distribution/distribution/v3/registry/storage/driver/filesystem"
	_ "github.com/distribution/distribution/v3/registry/storage/driver/inmemory"
)

// Config configures the registry.
type Config struct {
	// StorageDir keeps blobs on disk; empty keeps them in memory.
	StorageDir string
	// WebhookURL receives the notifications, e.g.
	// http://127.0.0.1:8080/webhooks/distribution. Empty sends none.
	WebhookURL string
	// WebhookToken is sent as "Authorization: Bearer <token>".
	WebhookToken string
	// LogLevel of Distribution's own logging (logrus levels). It logs every
	// 404 of a normal push at error level, so the default is "fatal".
	LogLevel string
}

// New returns the registry as an http.Handler. It stops its background work
// when ctx ends.
func New(ctx context.Context, cfg Config) (h http.Handler, err error) {
	if cfg.WebhookURL != "" && cfg.WebhookToken == "" {
		return nil, errors.New("devregistry: a webhook needs a token; ingest authenticates every webhook")
	}
	conf := &configuration.Configuration{}
	conf.Version = configuration.CurrentVersion
	if cfg.StorageDir != "" {
		conf.Storage = configuration.Storage{"filesystem": configuration.Parameters{"rootdirectory": cfg.StorageDir}}
	} else {
		conf.Storage = configuration.Storage{"inmemory": configuration.Parameters{}}
	}
	// A fixed per-process secret; Distribution warns when it must invent one.
	secret := make([]byte, 16)
	if _, err := rand.Read(secret); err != nil {
		return nil, err
	}
	conf.HTTP.Secret = hex.EncodeToString(secret)
	conf.Storage["delete"] = configuration.Parameters{"enabled": true}
	conf.Storage["maintenance"] = configuration.Parameters{"uploadpurging": map[any]any{"enabled": false}}
	if cfg.WebhookURL != "" {
		conf.Notifications.Endpoints = []configuration.Endpoint{{
			Name:    "customs-ingest",
			URL:     cfg.WebhookURL,
			Headers: http.Header{"Authorization": []string{"Bearer " + cfg.WebhookToken}},
			Timeout: 5 * time.Second,
			// Distribution keeps failed events in memory and retries them.
			Threshold: 5,
			Backoff:   time.Second,
			Ignore:    configuration.Ignore{Actions: []string{"pull"}},
		}}
	}
	if cfg.LogLevel == "" {
		cfg.LogLevel = "fatal"
	}
	lvl, err := logrus.ParseLevel(cfg.LogLevel)
	if err != nil {
		return nil, fmt.Errorf("devregistry: log level: %w", err)
	}
	// Distribution logs through the process-wide logrus logger.
	logrus.SetLevel(lvl)
	defer func() {
		// NewApp panics on a bad configuration; turn that into an error.
		if r := recover(); r != nil {
			h, err = nil, fmt.Errorf("devregistry: %v", r)
		}
	}()
	return handlers.NewApp(ctx, conf), nil
}
