// Package scanner is the scanner service: it consumes artifact.pushed,
// scans the image by digest straight from its registry with the Trivy
// library, stores the full report and a CycloneDX SBOM in the report object
// store, and publishes artifact.scanned (or artifact.failed).
package scanner

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/customs-dev/customs/pkg/lifecycle"
	"github.com/customs-dev/customs/pkg/registries"
)

// Durable is the scanner's consumer name on artifact.pushed. Every scanner
// process shares it, so each artifact goes to one of them. Never rename it.
const Durable = "scanner"

// DefaultDBRepository is where Trivy itself downloads its DB from. `make
// run` points the scanner at the project's small DB in the dev registry
// instead (vulndb.DefaultRepository).
const DefaultDBRepository = "mirror.gcr.io/aquasec/trivy-db:2,ghcr.io/aquasecurity/trivy-db:2"

// DefaultJavaDBRepository is where Trivy downloads its Java DB from (the
// index that names JARs); `make run` uses the project's own
// (javadb.DefaultRepository). "none" turns JAR analysis off.
const DefaultJavaDBRepository = "mirror.gcr.io/aquasec/trivy-java-db:1,ghcr.io/aquasecurity/trivy-java-db:1"

// ServiceConfig configures the scanner.
type ServiceConfig struct {
	// Registries is the allow-list spec (see registries.Parse). Ignored when
	// AllowList is set.
	Registries string
	// AllowList, when set, is used as is: the one-process runtime shares
	// one allow-list between services.
	AllowList *registries.AllowList

	// Concurrency is how many scans one process runs at once.
	Concurrency int
	// ScanTimeout bounds one scan, pull included.
	ScanTimeout time.Duration
	// AckWait is how long a delivery may go without an ack or a heartbeat
	// before JetStream hands it to another scanner.
	AckWait time.Duration
	// MaxDeliver bounds attempts for retryable errors (an unreachable
	// registry); after the last one a failure event is published.
	MaxDeliver int

	// DBRepositories are OCI references of the Trivy DB, tried in order
	// (`trivy --db-repository`).
	DBRepositories []string
	// DBUpdateInterval is how often the DB repository is checked for a new
	// DB. Zero disables the checks after start-up.
	DBUpdateInterval time.Duration
	// SkipDBUpdate uses the DB pre-seeded in CacheDir/db and never
	// downloads.
	SkipDBUpdate bool
	// JavaDBRepositories are OCI references of the Trivy Java DB, tried in
	// order (`trivy --java-db-repository`). JAR, WAR and EAR files are
	// analyzed only with a Java DB; empty or "none" turns that off.
	JavaDBRepositories []string
	// JavaDBCacheDir holds the Java DB (JavaDBCacheDir/java-db); default
	// CacheDir. It is kept for three days, as Trivy keeps it.
	JavaDBCacheDir string
	// CacheDir holds the DB (CacheDir/db...) and the fs layer cache.
	CacheDir string
	// CacheBackend is the layer cache: "fs", "memory" or "redis://...".
	CacheBackend string

	// MaxFindings caps the findings carried in artifact.scanned; the full
	// report is in the object store.
	MaxFindings int
	// Replicas of the report object store; match the stream's.
	Replicas int
	// Registerer takes the scanner's metrics; nil keeps them unregistered.
	Registerer prometheus.Registerer

	envErrs []error
}

// RegisterFlags adds the scanner flags, each defaulting to its environment
// variable.
func (c *ServiceConfig) RegisterFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.Registries, "scanner-registries", lifecycle.EnvOr("CUSTOMS_REGISTRIES", ""), "allow-list of registries to pull from: host[;plain-http][;insecure],... (env CUSTOMS_REGISTRIES)")
	fs.IntVar(&c.Concurrency, "scanner-concurrency", lifecycle.EnvInt("CUSTOMS_SCANNER_CONCURRENCY", 4), "concurrent scans per process (env CUSTOMS_SCANNER_CONCURRENCY)")
	fs.DurationVar(&c.ScanTimeout, "scanner-scan-timeout", c.envDuration("CUSTOMS_SCANNER_SCAN_TIMEOUT", 5*time.Minute), "timeout of one scan (env CUSTOMS_SCANNER_SCAN_TIMEOUT)")
	fs.DurationVar(&c.AckWait, "scanner-ack-wait", c.envDuration("CUSTOMS_SCANNER_ACK_WAIT", 60*time.Second), "ack wait of the scanner consumer; heartbeats go every third of it (env CUSTOMS_SCANNER_ACK_WAIT)")
	fs.IntVar(&c.MaxDeliver, "scanner-max-deliver", lifecycle.EnvInt("CUSTOMS_SCANNER_MAX_DELIVER", 8), "attempts for retryable scan errors (env CUSTOMS_SCANNER_MAX_DELIVER)")
	fs.Func("scanner-db-repository", "comma-separated OCI repositories of the Trivy DB, tried in order (env CUSTOMS_SCANNER_DB_REPOSITORY, default "+DefaultDBRepository+")", func(s string) error {
		c.DBRepositories = splitList(s)
		return nil
	})
	c.DBRepositories = splitList(lifecycle.EnvOr("CUSTOMS_SCANNER_DB_REPOSITORY", DefaultDBRepository))
	fs.Func("scanner-java-db-repository", `comma-separated OCI repositories of the Trivy Java DB, tried in order; "none" turns JAR analysis off (env CUSTOMS_SCANNER_JAVA_DB_REPOSITORY, default `+DefaultJavaDBRepository+")", func(s string) error {
		c.JavaDBRepositories = splitList(s)
		return nil
	})
	c.JavaDBRepositories = splitList(lifecycle.EnvOr("CUSTOMS_SCANNER_JAVA_DB_REPOSITORY", DefaultJavaDBRepository))
	fs.DurationVar(&c.DBUpdateInterval, "scanner-db-update-interval", c.envDuration("CUSTOMS_SCANNER_DB_UPDATE_INTERVAL", 6*time.Hour), "how often to check the DB repository for a new DB; 0 disables (env CUSTOMS_SCANNER_DB_UPDATE_INTERVAL)")
	fs.BoolVar(&c.SkipDBUpdate, "scanner-skip-db-update", lifecycle.EnvBool("CUSTOMS_SCANNER_SKIP_DB_UPDATE", false), "use the DB pre-seeded in <cache-dir>/db and never download (env CUSTOMS_SCANNER_SKIP_DB_UPDATE)")
	fs.StringVar(&c.CacheDir, "scanner-cache-dir", lifecycle.EnvOr("CUSTOMS_SCANNER_CACHE_DIR", defaultCacheDir()), "DB and layer cache directory (env CUSTOMS_SCANNER_CACHE_DIR)")
	fs.StringVar(&c.CacheBackend, "scanner-cache-backend", lifecycle.EnvOr("CUSTOMS_SCANNER_CACHE_BACKEND", "fs"), "layer cache: fs, memory or redis://host:port (env CUSTOMS_SCANNER_CACHE_BACKEND)")
	fs.IntVar(&c.MaxFindings, "scanner-max-findings", lifecycle.EnvInt("CUSTOMS_SCANNER_MAX_FINDINGS", 200), "findings carried in artifact.scanned (env CUSTOMS_SCANNER_MAX_FINDINGS)")
}

// Validate checks the config and fills in defaults.
func (c *ServiceConfig) Validate() error {
	if err := errors.Join(c.envErrs...); err != nil {
		return err
	}
	if c.AllowList == nil {
		al, err := registries.Parse(c.Registries)
		if err != nil {
			return fmt.Errorf("scanner: %w", err)
		}
		c.AllowList = al
	}
	if c.Concurrency <= 0 {
		c.Concurrency = 4
	}
	if c.ScanTimeout <= 0 {
		c.ScanTimeout = 5 * time.Minute
	}
	if c.AckWait <= 0 {
		c.AckWait = 60 * time.Second
	}
	if c.MaxDeliver <= 0 {
		c.MaxDeliver = 8
	}
	if c.MaxFindings <= 0 {
		c.MaxFindings = 200
	}
	if c.CacheDir == "" {
		c.CacheDir = defaultCacheDir()
	}
	if c.CacheBackend == "" {
		c.CacheBackend = "fs"
	}
	switch {
	case c.CacheBackend == "fs", c.CacheBackend == "memory", strings.HasPrefix(c.CacheBackend, "redis://"):
	default:
		return fmt.Errorf("scanner: cache backend %q: want fs, memory or redis://host:port", c.CacheBackend)
	}
	if len(c.JavaDBRepositories) == 1 && c.JavaDBRepositories[0] == "none" {
		c.JavaDBRepositories = nil
	}
	if c.JavaDBCacheDir == "" {
		c.JavaDBCacheDir = c.CacheDir
	}
	if !c.SkipDBUpdate && len(c.DBRepositories) == 0 {
		return errors.New("scanner: a DB repository is required unless DB updates are skipped")
	}
	return nil
}

func defaultCacheDir() string {
	if d, err := os.UserCacheDir(); err == nil {
		return filepath.Join(d, "customs", "scanner")
	}
	return filepath.Join(os.TempDir(), "customs-scanner")
}

func (c *ServiceConfig) envDuration(name string, def time.Duration) time.Duration {
	v, ok := os.LookupEnv(name)
	if !ok {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		c.envErrs = append(c.envErrs, fmt.Errorf("scanner: %s: %w", name, err))
		return def
	}
	return d
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}
