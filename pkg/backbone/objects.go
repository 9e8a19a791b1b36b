package backbone

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/nats-io/nats.go/jetstream"
)

// BucketReports is the JetStream object store that holds full scan reports
// and SBOMs by digest. Never rename it.
const BucketReports = "CUSTOMS_REPORTS"

// Media types of stored objects.
const (
	MediaTypeTrivyJSON = "application/vnd.aquasec.trivy.report+json"
	MediaTypeCycloneDX = "application/vnd.cyclonedx+json"
)

// ReportObject is the object name of a digest's full Trivy JSON report.
func ReportObject(digest string) string { return objectPrefix(digest) + "/trivy.json" }

// SBOMObject is the object name of a digest's CycloneDX SBOM.
func SBOMObject(digest string) string { return objectPrefix(digest) + "/sbom.cdx.json" }

func objectPrefix(digest string) string { return strings.Replace(digest, ":", "/", 1) }

// EnsureReportStore opens the report object store, creating it if needed.
func EnsureReportStore(ctx context.Context, js jetstream.JetStream, replicas int) (jetstream.ObjectStore, error) {
	os, err := js.ObjectStore(ctx, BucketReports)
	if err == nil {
		return os, nil
	}
	if !errors.Is(err, jetstream.ErrBucketNotFound) {
		return nil, fmt.Errorf("open object store %s: %w", BucketReports, err)
	}
	os, err = js.CreateOrUpdateObjectStore(ctx, jetstream.ObjectStoreConfig{
		Bucket:      BucketReports,
		Description: "Customs scan reports and SBOMs, by digest",
		Storage:     jetstream.FileStorage,
		Replicas:    max(replicas, 1),
		Compression: true,
	})
	if err != nil {
		return nil, fmt.Errorf("create object store %s: %w", BucketReports, err)
	}
	return os, nil
}
