// Package javadb builds and publishes a small Trivy Java DB: the SQLite
// index (trivy-java-db's own schema and writer) that maps JAR SHA-1 digests
// to Maven coordinates, which Trivy's JAR analyzer needs before it analyzes
// any JAR. Like the vulnerability DB it is served the real way, as an OCI
// artifact that Trivy's Java DB client downloads (`trivy
// --java-db-repository`).
package javadb

import (
	"context"
	"fmt"
	"os"
	"time"

	javadb "github.com/aquasecurity/trivy-java-db/pkg/db"
	javatypes "github.com/aquasecurity/trivy-java-db/pkg/types"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	// The SQLite driver trivy-java-db opens its DB with, as the trivy CLI
	// registers it.
	_ "modernc.org/sqlite"

	"github.com/customs-dev/customs/services/scanner/fixtures"
	"github.com/customs-dev/customs/services/scanner/vulndb"
)

// Layer media type and title of a Trivy Java DB artifact, as Trivy's OCI
// client expects them (the config media type is vulndb's).
const (
	MediaTypeLayer = "application/vnd.aquasec.trivy.javadb.layer.v1.tar+gzip"
	LayerTitle     = "javadb.tar.gz"
)

// DefaultRepository is where `make run` publishes the project's Java DB in
// the dev registry; the tag is the schema version, as for
// ghcr.io/aquasecurity/trivy-java-db:1.
const (
	DefaultRepository = "customs/trivy-java-db"
	DefaultTag        = "1"
)

// Files of the DB directory, as Trivy reads them.
const (
	dbFile       = "trivy-java.db"
	metadataFile = "metadata.json"
)

// Index maps one JAR's SHA-1 to its Maven coordinates.
type Index struct {
	GroupID, ArtifactID, Version string
	SHA1                         []byte
}

// Default is the index of the project's JAR fixtures that carry no
// pom.properties, so only the Java DB can name them.
func Default() []Index {
	var out []Index
	for _, j := range fixtures.Jars() {
		if j.WithPOM {
			continue
		}
		out = append(out, Index{GroupID: j.GroupID, ArtifactID: j.ArtifactID, Version: j.Version, SHA1: j.SHA1()})
	}
	return out
}

// Build writes a Java DB holding indexes into dir, updated at updatedAt
// and due for an update three days later (Trivy's own cadence).
func Build(dir string, indexes []Index, updatedAt time.Time) error {
	db, err := javadb.New(dir)
	if err != nil {
		return fmt.Errorf("java DB: %w", err)
	}
	defer func() { _ = db.Close() }()
	if err := db.Init(); err != nil {
		return fmt.Errorf("java DB: %w", err)
	}
	rows := make([]javatypes.Index, 0, len(indexes))
	for _, ix := range indexes {
		if ix.GroupID == "" || ix.ArtifactID == "" || ix.Version == "" || len(ix.SHA1) != 20 {
			return fmt.Errorf("java DB: index %+v needs a group, an artifact, a version and a 20-byte SHA-1", ix)
		}
		rows = append(rows, javatypes.Index{GroupID: ix.GroupID, ArtifactID: ix.ArtifactID, Version: ix.Version, SHA1: ix.SHA1, ArchiveType: javatypes.JarType})
	}
	if err := db.InsertIndexes(rows); err != nil {
		return fmt.Errorf("java DB: %w", err)
	}
	meta := javadb.NewMetadata(dir)
	if err := meta.Update(javadb.Metadata{Version: javadb.SchemaVersion, UpdatedAt: updatedAt.UTC(), NextUpdate: updatedAt.UTC().Add(72 * time.Hour)}); err != nil {
		return fmt.Errorf("java DB metadata: %w", err)
	}
	return nil
}

// Archive packs the DB files of dir into the artifact's tar.gz layer.
func Archive(dir string) ([]byte, error) { return vulndb.ArchiveFiles(dir, dbFile, metadataFile) }

// Image wraps an archive as the OCI artifact.
func Image(archive []byte) (v1.Image, error) {
	return vulndb.ArtifactImage(archive, MediaTypeLayer, LayerTitle)
}

// Publish builds the DB from indexes (Default() when nil) and pushes it to
// registryHost/repo:DefaultTag. It returns the reference to give the
// scanner (or `trivy --java-db-repository`).
func Publish(ctx context.Context, registryHost, repo string, indexes []Index, opts ...remote.Option) (string, error) {
	if indexes == nil {
		indexes = Default()
	}
	tag, err := name.NewTag(registryHost + "/" + repo + ":" + DefaultTag)
	if err != nil {
		return "", fmt.Errorf("publish java DB: %w", err)
	}
	dir, err := os.MkdirTemp("", "customs-javadb-")
	if err != nil {
		return "", fmt.Errorf("publish java DB: %w", err)
	}
	defer func() { _ = os.RemoveAll(dir) }()
	if err := Build(dir, indexes, time.Now()); err != nil {
		return "", err
	}
	archive, err := Archive(dir)
	if err != nil {
		return "", err
	}
	img, err := Image(archive)
	if err != nil {
		return "", err
	}
	if err := remote.Write(tag, img, append([]remote.Option{remote.WithContext(ctx)}, opts...)...); err != nil {
		return "", fmt.Errorf("publish java DB to %s: %w", tag, err)
	}
	return tag.String(), nil
}
