// Package vulndb builds the project's small Trivy vulnerability DB from YAML
// advisories with trivy-db's Go API, and publishes it as an OCI artifact in
// the layout Trivy's DB client downloads (`trivy --db-repository`). Tests,
// the benchmark and `make run` use it, so the scanner always gets its DB
// through the same download path as in production.
package vulndb

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	_ "embed"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/aquasecurity/trivy-db/pkg/db"
	"github.com/aquasecurity/trivy-db/pkg/metadata"
	dbtypes "github.com/aquasecurity/trivy-db/pkg/types"
	bolt "go.etcd.io/bbolt"
	"gopkg.in/yaml.v3"
)

//go:embed advisories.yaml
var defaultAdvisories []byte

// Advisories is the YAML source of a DB.
type Advisories struct {
	UpdatedAt       time.Time       `yaml:"updated_at"`
	Sources         []Source        `yaml:"sources"`
	Vulnerabilities []Vulnerability `yaml:"vulnerabilities"`
	Advisories      []Advisory      `yaml:"advisories"`
}

// Source is a data source, stored per bucket: Trivy takes a vendor
// severity from it and shows it in reports.
type Source struct {
	Bucket string `yaml:"bucket"`
	ID     string `yaml:"id"`
	Name   string `yaml:"name"`
	URL    string `yaml:"url"`
}

// Vulnerability is a vulnerability's details.
type Vulnerability struct {
	ID    string `yaml:"id"`
	Title string `yaml:"title"`
	// Severity by source id ("nvd", "alpine", "debian", "ghsa", ...).
	Severity map[string]string `yaml:"severity"`
}

// Advisory says a package in a bucket is affected. OS buckets use Fixed;
// language buckets use Vulnerable and Patched version ranges.
type Advisory struct {
	Bucket     string   `yaml:"bucket"`
	Package    string   `yaml:"package"`
	ID         string   `yaml:"id"`
	Fixed      string   `yaml:"fixed"`
	Vulnerable []string `yaml:"vulnerable"`
	Patched    []string `yaml:"patched"`
}

// Default returns the project's advisories (advisories.yaml).
func Default() *Advisories {
	a, err := Parse(defaultAdvisories)
	if err != nil {
		panic("vulndb: embedded advisories.yaml is invalid: " + err.Error())
	}
	return a
}

// Parse reads and validates advisories.
func Parse(data []byte) (*Advisories, error) {
	var a Advisories
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&a); err != nil {
		return nil, fmt.Errorf("parse advisories: %w", err)
	}
	if err := a.Validate(); err != nil {
		return nil, err
	}
	return &a, nil
}

// Validate checks that every advisory has a bucket with a source, a
// package and a known vulnerability, and that severities are Trivy's.
func (a *Advisories) Validate() error {
	var errs []error
	if a.UpdatedAt.IsZero() {
		errs = append(errs, errors.New("updated_at is required"))
	}
	buckets := map[string]bool{}
	for i, s := range a.Sources {
		if s.Bucket == "" || s.ID == "" {
			errs = append(errs, fmt.Errorf("sources[%d]: bucket and id are required", i))
		}
		buckets[s.Bucket] = true
	}
	vulns := map[string]bool{}
	for i, v := range a.Vulnerabilities {
		if v.ID == "" {
			errs = append(errs, fmt.Errorf("vulnerabilities[%d]: id is required", i))
		}
		vulns[v.ID] = true
		for src, sev := range v.Severity {
			if _, err := dbtypes.NewSeverity(strings.ToUpper(sev)); err != nil {
				errs = append(errs, fmt.Errorf("vulnerabilities[%d] %s: severity %s: %w", i, v.ID, src, err))
			}
		}
	}
	for i, adv := range a.Advisories {
		switch {
		case adv.Package == "" || adv.ID == "":
			errs = append(errs, fmt.Errorf("advisories[%d]: package and id are required", i))
		case !buckets[adv.Bucket]:
			errs = append(errs, fmt.Errorf("advisories[%d] %s: bucket %q has no source", i, adv.ID, adv.Bucket))
		case !vulns[adv.ID]:
			errs = append(errs, fmt.Errorf("advisories[%d]: vulnerability %s is not described", i, adv.ID))
		case adv.Fixed == "" && len(adv.Vulnerable) == 0:
			errs = append(errs, fmt.Errorf("advisories[%d] %s: fixed or vulnerable is required", i, adv.ID))
		}
	}
	return errors.Join(errs...)
}

// Build writes trivy.db and metadata.json for a into dir with trivy-db's
// own writers. It opens its own bolt file rather than going through
// trivy-db's process-wide handle, so it can run while this process scans.
func Build(dir string, a *Advisories) (metadata.Metadata, error) {
	if err := a.Validate(); err != nil {
		return metadata.Metadata{}, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return metadata.Metadata{}, fmt.Errorf("build DB: %w", err)
	}
	_ = os.Remove(db.Path(dir))
	if err := write(db.Path(dir), a); err != nil {
		return metadata.Metadata{}, err
	}
	meta := metadata.Metadata{
		Version:    db.SchemaVersion,
		UpdatedAt:  a.UpdatedAt.UTC(),
		NextUpdate: a.UpdatedAt.UTC().Add(24 * time.Hour),
	}
	if err := metadata.NewClient(dir).Update(meta); err != nil {
		return metadata.Metadata{}, fmt.Errorf("build DB: write metadata: %w", err)
	}
	return meta, nil
}

func write(path string, a *Advisories) (err error) {
	bdb, err := bolt.Open(path, 0o644, &bolt.Options{Timeout: time.Second})
	if err != nil {
		return fmt.Errorf("build DB: %w", err)
	}
	defer func() {
		if cerr := bdb.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("build DB: %w", cerr)
		}
	}()
	// One transaction per record: bbolt spills the buckets a transaction
	// touched in map order, so a transaction that touches one bucket path
	// lays out pages the same way every time, and the same advisories give
	// the same DB bytes (and the same artifact digest).
	bdb.NoSync = true
	dbc := db.Config{}
	for _, s := range a.Sources {
		if err := bdb.Update(func(tx *bolt.Tx) error {
			return dbc.PutDataSource(tx, s.Bucket, dbtypes.DataSource{ID: dbtypes.SourceID(s.ID), Name: s.Name, URL: s.URL})
		}); err != nil {
			return fmt.Errorf("put data source %s: %w", s.Bucket, err)
		}
	}
	for _, v := range a.Vulnerabilities {
		vendor := dbtypes.VendorSeverity{}
		for src, sev := range v.Severity {
			s, _ := dbtypes.NewSeverity(strings.ToUpper(sev))
			vendor[dbtypes.SourceID(src)] = s
		}
		if err := bdb.Update(func(tx *bolt.Tx) error {
			return dbc.PutVulnerability(tx, v.ID, dbtypes.Vulnerability{Title: v.Title, VendorSeverity: vendor})
		}); err != nil {
			return fmt.Errorf("put vulnerability %s: %w", v.ID, err)
		}
		if err := bdb.Update(func(tx *bolt.Tx) error { return dbc.PutVulnerabilityID(tx, v.ID) }); err != nil {
			return fmt.Errorf("put vulnerability id %s: %w", v.ID, err)
		}
	}
	for _, adv := range a.Advisories {
		advisory := dbtypes.Advisory{FixedVersion: adv.Fixed, VulnerableVersions: adv.Vulnerable, PatchedVersions: adv.Patched}
		if err := bdb.Update(func(tx *bolt.Tx) error {
			return dbc.PutAdvisory(tx, []string{adv.Bucket, adv.Package}, adv.ID, advisory)
		}); err != nil {
			return fmt.Errorf("put advisory %s %s: %w", adv.Package, adv.ID, err)
		}
	}
	return bdb.Sync()
}

// Archive packs trivy.db and metadata.json from dir into the tar.gz that
// is the DB artifact's single layer.
func Archive(dir string) ([]byte, error) { return ArchiveFiles(dir, "trivy.db", "metadata.json") }

// ArchiveFiles packs the named files of dir into a tar.gz, the layer of a
// Trivy DB artifact (the vulnerability DB or the Java DB). Entries carry
// no times, so the same files give the same bytes.
func ArchiveFiles(dir string, names ...string) ([]byte, error) {
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	for _, name := range names {
		data, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			return nil, fmt.Errorf("archive DB: %w", err)
		}
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(data)), Typeflag: tar.TypeReg, Format: tar.FormatPAX}); err != nil {
			return nil, fmt.Errorf("archive DB: %w", err)
		}
		if _, err := io.Copy(tw, bytes.NewReader(data)); err != nil {
			return nil, fmt.Errorf("archive DB: %w", err)
		}
	}
	if err := tw.Close(); err != nil {
		return nil, fmt.Errorf("archive DB: %w", err)
	}
	if err := gz.Close(); err != nil {
		return nil, fmt.Errorf("archive DB: %w", err)
	}
	return buf.Bytes(), nil
}
