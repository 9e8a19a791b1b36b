package scanner

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/aquasecurity/trivy-db/pkg/metadata"
	trivydb "github.com/aquasecurity/trivy/pkg/db"
	ftypes "github.com/aquasecurity/trivy/pkg/fanal/types"
	"github.com/aquasecurity/trivy/pkg/oci"
	xhttp "github.com/aquasecurity/trivy/pkg/x/http"
	"github.com/google/go-containerregistry/pkg/name"

	"github.com/customs-dev/customs/pkg/lifecycle"
	"github.com/customs-dev/customs/pkg/registries"
	"github.com/customs-dev/customs/services/scanner/vulndb"
)

// dbManager downloads Trivy's DB with Trivy's own DB client (the code path
// of `trivy --db-repository`), opens it, and replaces it when the
// repository holds a new one.
type dbManager struct {
	repos    []name.Reference
	regOpts  ftypes.RegistryOptions
	insecure bool
	cacheDir string
	skip     bool
	log      *slog.Logger

	mu     sync.RWMutex
	info   DBInfo
	digest string
	dir    string
}

func newDBManager(cfg ServiceConfig, log *slog.Logger) (*dbManager, error) {
	m := &dbManager{cacheDir: cfg.CacheDir, skip: cfg.SkipDBUpdate, log: log}
	var err error
	if m.repos, m.regOpts, m.insecure, err = dbReferences(cfg.AllowList, cfg.DBRepositories); err != nil {
		return nil, fmt.Errorf("scanner: DB repository: %w", err)
	}
	return m, nil
}

// dbReferences parses the references of a DB repository setting. The DB
// repository is operator configuration, not webhook input, so it need not
// be on the allow-list; when its registry is, that entry's options and
// credentials apply. insecureTLS reports a registry marked insecure.
func dbReferences(allow *registries.AllowList, repos []string) (refs []name.Reference, opts ftypes.RegistryOptions, insecureTLS bool, err error) {
	for _, r := range repos {
		host, _, _ := strings.Cut(r, "/")
		var nameOpts []name.Option
		if reg, err := allow.Lookup(host); err == nil {
			if reg.PlainHTTP {
				nameOpts = append(nameOpts, name.Insecure)
				opts.Insecure = true
			}
			if reg.Insecure {
				insecureTLS = true
			}
			if reg.Username != "" {
				opts.Credentials = append(opts.Credentials, ftypes.Credential{Username: reg.Username, Password: reg.Password})
			}
		}
		ref, err := name.ParseReference(r, nameOpts...)
		if err != nil {
			return nil, opts, false, fmt.Errorf("%q: %w", r, err)
		}
		refs = append(refs, ref)
	}
	return refs, opts, insecureTLS, nil
}

// Info returns the DB in use.
func (m *dbManager) Info() DBInfo {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.info
}

// seededDir is where a pre-seeded DB lives, as in Trivy's cache layout.
func (m *dbManager) seededDir() string { return trivydb.Dir(m.cacheDir) }

// Start opens the DB: the pre-seeded one when updates are skipped, else a
// fresh download, falling back to a pre-seeded DB if the repository cannot
// be reached.
func (m *dbManager) Start(ctx context.Context) error {
	if m.skip {
		return m.openSeeded()
	}
	if _, err := m.Update(ctx); err != nil {
		if _, statErr := os.Stat(metadata.Path(m.seededDir())); statErr == nil {
			m.log.Warn("DB download failed; using the pre-seeded DB", "error", err, "dir", m.seededDir())
			return m.openSeeded()
		}
		return err
	}
	return nil
}

func (m *dbManager) openSeeded() error {
	dir := m.seededDir()
	meta, err := metadata.NewClient(dir).Get()
	if err != nil {
		return fmt.Errorf("scanner: pre-seeded DB in %s: %w", dir, err)
	}
	if err := vulndb.Open(dir); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.dir = dir
	m.info = DBInfo{Version: strconv.Itoa(meta.Version), UpdatedAt: meta.UpdatedAt}
	m.log.Info("vulnerability DB opened", "dir", dir, "updated_at", meta.UpdatedAt)
	return nil
}

// ctx carries the transport Trivy's registry client uses, with TLS
// verification off when the DB registry is marked insecure.
func (m *dbManager) ctx(ctx context.Context) context.Context {
	if !m.insecure {
		return ctx
	}
	return xhttp.WithTransport(ctx, insecureTransport{})
}

type insecureTransport struct{}

func (insecureTransport) Build(opts ...xhttp.TransportOption) http.RoundTripper {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.TLSClientConfig = &tls.Config{InsecureSkipVerify: true} //nolint:gosec // opted in per registry
	for _, o := range opts {
		o(t)
	}
	return t
}

// Update downloads and opens the DB if the repository has a new one. It
// reports whether it did.
func (m *dbManager) Update(ctx context.Context) (bool, error) {
	ctx = m.ctx(ctx)
	digest := ""
	for _, r := range m.repos {
		d, err := oci.NewArtifact(r.String(), m.regOpts).Digest(ctx)
		if err == nil {
			digest = d
			break
		}
		m.log.Debug("DB digest lookup failed", "repository", r.String(), "error", err)
	}
	m.mu.RLock()
	same := digest != "" && digest == m.digest
	m.mu.RUnlock()
	if same {
		return false, nil
	}
	dir, err := os.MkdirTemp(m.cacheDir, "db-")
	if err != nil {
		if err := os.MkdirAll(m.cacheDir, 0o700); err != nil {
			return false, fmt.Errorf("scanner: DB cache dir: %w", err)
		}
		if dir, err = os.MkdirTemp(m.cacheDir, "db-"); err != nil {
			return false, fmt.Errorf("scanner: DB cache dir: %w", err)
		}
	}
	client := trivydb.NewClient(dir, true, trivydb.WithDBRepository(m.repos))
	if err := client.Download(ctx, dir, m.regOpts); err != nil {
		_ = os.RemoveAll(dir)
		return false, fmt.Errorf("scanner: download vulnerability DB: %w", err)
	}
	meta, err := metadata.NewClient(dir).Get()
	if err != nil {
		_ = os.RemoveAll(dir)
		return false, fmt.Errorf("scanner: downloaded DB: %w", err)
	}
	if meta.Version != trivydb.SchemaVersion {
		_ = os.RemoveAll(dir)
		return false, fmt.Errorf("scanner: downloaded DB has schema %d, want %d", meta.Version, trivydb.SchemaVersion)
	}
	if err := vulndb.Open(dir); err != nil {
		_ = os.RemoveAll(dir)
		return false, err
	}
	m.mu.Lock()
	old := m.dir
	m.dir, m.digest = dir, digest
	version := strconv.Itoa(meta.Version)
	if digest != "" {
		version += "@" + digest
	}
	m.info = DBInfo{Version: version, UpdatedAt: meta.UpdatedAt}
	m.mu.Unlock()
	if old != "" && old != m.seededDir() {
		_ = os.RemoveAll(old)
	}
	m.log.Info("vulnerability DB updated", "digest", digest, "updated_at", meta.UpdatedAt, "dir", dir)
	return true, nil
}

// Run checks for a new DB every interval until ctx ends.
func (m *dbManager) Run(ctx context.Context, interval time.Duration) {
	if m.skip {
		return
	}
	lifecycle.Every(ctx, interval, func(ctx context.Context) {
		if _, err := m.Update(ctx); err != nil && !errors.Is(err, context.Canceled) {
			m.log.Warn("vulnerability DB update failed; keeping the current DB", "error", err)
		}
	})
}
