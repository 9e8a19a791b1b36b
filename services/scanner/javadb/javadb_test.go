package javadb

import (
	"encoding/hex"
	"strings"
	"testing"
	"time"

	javadb "github.com/aquasecurity/trivy-java-db/pkg/db"

	"github.com/customs-dev/customs/services/scanner/fixtures"
)

func TestBuildIsReadableByTrivyJavaDB(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	at := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	if err := Build(dir, Default(), at); err != nil {
		t.Fatal(err)
	}
	db, err := javadb.New(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = db.Close() }()
	var text fixtures.Jar
	for _, j := range fixtures.Jars() {
		if j.ArtifactID == "commons-text" {
			text = j
		}
	}
	got, err := db.SelectIndexBySha1(hex.EncodeToString(text.SHA1()))
	if err != nil {
		t.Fatal(err)
	}
	if got.GroupID != "org.apache.commons" || got.ArtifactID != "commons-text" || got.Version != "1.9" {
		t.Errorf("index by SHA-1 = %+v, want org.apache.commons:commons-text:1.9", got)
	}
	mc := javadb.NewMetadata(dir)
	meta, err := mc.Get()
	if err != nil {
		t.Fatal(err)
	}
	if meta.Version != javadb.SchemaVersion || !meta.UpdatedAt.Equal(at) || !meta.NextUpdate.Equal(at.Add(72*time.Hour)) {
		t.Errorf("metadata = %+v", meta)
	}
	// A JAR with pom.properties needs no index.
	for _, ix := range Default() {
		if ix.ArtifactID == "log4j-core" {
			t.Errorf("log4j-core is indexed, but its pom.properties names it: %+v", ix)
		}
	}
	if archive, err := Archive(dir); err != nil || len(archive) == 0 {
		t.Errorf("Archive = %d bytes, %v", len(archive), err)
	}
}

func TestBuildRefusesIncompleteIndexes(t *testing.T) {
	t.Parallel()
	for _, bad := range []Index{
		{ArtifactID: "a", Version: "1", SHA1: make([]byte, 20)},
		{GroupID: "g", ArtifactID: "a", Version: "1", SHA1: []byte{1}},
	} {
		if err := Build(t.TempDir(), []Index{bad}, time.Now()); err == nil || !strings.Contains(err.Error(), "needs") {
			t.Errorf("Build(%+v) = %v, want a refusal", bad, err)
		}
	}
}
