package scanner

import (
	// The SQLite driver, as the trivy CLI registers it: the RPM analyzer
	// reads rpmdb.sqlite and the JAR analyzer the Java DB with it.
	_ "modernc.org/sqlite"

	"bytes"
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"strings"

	dbtypes "github.com/aquasecurity/trivy-db/pkg/types"
	"github.com/aquasecurity/trivy/pkg/fanal/analyzer"
	"github.com/aquasecurity/trivy/pkg/fanal/applier"
	"github.com/aquasecurity/trivy/pkg/fanal/artifact"
	artimage "github.com/aquasecurity/trivy/pkg/fanal/artifact/image"
	fimage "github.com/aquasecurity/trivy/pkg/fanal/image"
	ftypes "github.com/aquasecurity/trivy/pkg/fanal/types"
	"github.com/aquasecurity/trivy/pkg/report"
	"github.com/aquasecurity/trivy/pkg/report/cyclonedx"
	"github.com/aquasecurity/trivy/pkg/result"
	"github.com/aquasecurity/trivy/pkg/scan"
	"github.com/aquasecurity/trivy/pkg/scan/langpkg"
	"github.com/aquasecurity/trivy/pkg/scan/local"
	"github.com/aquasecurity/trivy/pkg/scan/ospkg"
	"github.com/aquasecurity/trivy/pkg/types"
	"github.com/aquasecurity/trivy/pkg/vulnerability"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	v1types "github.com/google/go-containerregistry/pkg/v1/types"

	trivydb "github.com/aquasecurity/trivy-db/pkg/db"

	customsv1 "github.com/customs-dev/customs/gen/go/customs/v1"
	"github.com/customs-dev/customs/pkg/registries"
	"github.com/customs-dev/customs/services/scanner/vulndb"
)

// ErrNotScannable marks an artifact no retry can scan: its registry is not
// allowed, its manifest is missing, or it is not a container image. The
// scanner publishes a failure event with the reason.
var ErrNotScannable = errors.New("artifact is not scannable")

// Result is one finished scan.
type Result struct {
	Report types.Report
	// JSON is the full Trivy JSON report, packages included.
	JSON []byte
	// SBOM is the CycloneDX JSON SBOM.
	SBOM []byte
}

// engine scans images with the Trivy library the way `trivy image
// --scanners vuln` does.
type engine struct {
	allow   *registries.AllowList
	cache   *onceCache
	backend local.Service
	artOpt  artifact.Option
	scanOpt types.ScanOptions
	filter  result.FilterOptions
	version string
}

func newEngine(allow *registries.AllowList, c *onceCache, jars bool) *engine {
	// The analyzers `trivy image --scanners vuln` disables, plus, without
	// a Java DB, the JAR analyzer: it would fail every image that holds a
	// JAR.
	disabled := append([]analyzer.Type{
		analyzer.TypeApkCommand, analyzer.TypeSecret, analyzer.TypeLicenseFile,
		analyzer.TypeHistoryDockerfile, analyzer.TypeExecutable, analyzer.TypeRpmArchive,
	}, analyzer.TypeConfigFiles...)
	if !jars {
		disabled = append(disabled, analyzer.TypeJar)
	}
	return &engine{
		allow:   allow,
		cache:   c,
		backend: local.NewService(applier.NewApplier(c), ospkg.NewScanner(), langpkg.NewScanner(), vulnerability.NewClient(trivydb.Config{})),
		artOpt: artifact.Option{
			DisabledAnalyzers: disabled,
			Offline:           true,
			NoProgress:        true,
		},
		scanOpt: types.ScanOptions{
			PkgTypes:         []string{types.PkgTypeOS, types.PkgTypeLibrary},
			PkgRelationships: ftypes.Relationships,
			Scanners:         types.Scanners{types.VulnerabilityScanner},
			// Without "auto" every severity comes back UNKNOWN.
			VulnSeveritySources: []dbtypes.SourceID{"auto"},
		},
		filter: result.FilterOptions{
			Severities: []dbtypes.Severity{dbtypes.SeverityUnknown, dbtypes.SeverityLow, dbtypes.SeverityMedium, dbtypes.SeverityHigh, dbtypes.SeverityCritical},
		},
		version: TrivyVersion(),
	}
}

// trivyModuleVersion is the Trivy version in go.mod, for binaries without
// module build info (test binaries). A test keeps it in sync with go.mod.
const trivyModuleVersion = "v0.74.0"

// TrivyVersion is the version of the Trivy module linked in.
func TrivyVersion() string {
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, m := range bi.Deps {
			if m.Path == "github.com/aquasecurity/trivy" {
				if m.Replace != nil {
					return m.Replace.Version
				}
				return m.Version
			}
		}
	}
	return trivyModuleVersion
}

// scan pulls the image by digest from its registry and scans it.
func (e *engine) scan(ctx context.Context, a *customsv1.ArtifactRef) (*Result, error) {
	ctx, release := e.cache.withClaims(ctx)
	defer release()
	img, err := e.image(ctx, a)
	if err != nil {
		return nil, err
	}
	art, err := artimage.NewArtifact(img, e.cache, e.artOpt)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrNotScannable, err)
	}
	// Hold the DB for the whole scan, so an update waits for it.
	vulndb.RLock()
	rep, err := scan.NewService(e.backend, art).ScanArtifact(ctx, e.scanOpt)
	vulndb.RUnlock()
	if err != nil {
		return nil, fmt.Errorf("scan %s: %w", img.Name(), err)
	}
	rep.Trivy.Version = e.version
	// The CLI filters (dedups and sorts) findings before writing them.
	if err := result.Filter(ctx, rep, e.filter); err != nil {
		return nil, fmt.Errorf("filter findings: %w", err)
	}
	var js, sbom bytes.Buffer
	if err := (&report.JSONWriter{Output: &js, ListAllPkgs: true}).Write(ctx, rep); err != nil {
		return nil, fmt.Errorf("write report: %w", err)
	}
	if err := cyclonedx.NewWriter(&sbom, e.version).Write(ctx, rep); err != nil {
		return nil, fmt.Errorf("write SBOM: %w", err)
	}
	return &Result{Report: rep, JSON: js.Bytes(), SBOM: sbom.Bytes()}, nil
}

// image resolves the artifact in its registry through the allow-list, with
// that registry's credentials and transport.
func (e *engine) image(ctx context.Context, a *customsv1.ArtifactRef) (ftypes.Image, error) {
	refStr := a.GetRegistry() + "/" + a.GetRepository() + "@" + a.GetDigest()
	ref, reg, err := e.allow.Reference(refStr)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrNotScannable, err)
	}
	opts, err := e.allow.RemoteOptions(reg)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrNotScannable, err)
	}
	opts = append(opts, remote.WithContext(ctx))
	desc, err := remote.Get(ref, opts...)
	if err != nil {
		return nil, fmt.Errorf("get manifest %s: %w", refStr, err)
	}
	if desc.ArtifactType != "" && !v1types.MediaType(desc.ArtifactType).IsConfig() {
		return nil, fmt.Errorf("%w: artifact type %q is not a container image", ErrNotScannable, desc.ArtifactType)
	}
	if !desc.MediaType.IsImage() && !desc.MediaType.IsIndex() {
		return nil, fmt.Errorf("%w: media type %q is not a container image", ErrNotScannable, desc.MediaType)
	}
	img, err := desc.Image()
	if err != nil {
		return nil, fmt.Errorf("read image %s: %w", refStr, err)
	}
	m, err := img.Manifest()
	if err != nil {
		return nil, fmt.Errorf("read manifest %s: %w", refStr, err)
	}
	if mt := m.Config.MediaType; mt != v1types.OCIConfigJSON && mt != v1types.DockerConfigJSON {
		return nil, fmt.Errorf("%w: config media type %q is not a container image config", ErrNotScannable, mt)
	}
	return &remoteImage{Image: img, name: refStr, ref: ref, tag: a.GetTag(), digest: desc.Digest}, nil
}

// remoteImage gives Trivy the names it puts in the report, as its own
// remote image source does.
type remoteImage struct {
	v1.Image
	name   string
	ref    name.Reference
	tag    string
	digest v1.Hash
}

func (r *remoteImage) Name() string        { return r.name }
func (r *remoteImage) ID() (string, error) { return fimage.ID(r.Image) }
func (r *remoteImage) RepoTags() []string {
	if r.tag == "" {
		return []string{}
	}
	return []string{r.repo() + ":" + r.tag}
}
func (r *remoteImage) RepoDigests() []string { return []string{r.repo() + "@" + r.digest.String()} }
func (r *remoteImage) repo() string {
	return strings.TrimSuffix(r.ref.Context().RegistryStr()+"/"+r.ref.Context().RepositoryStr(), "/")
}
