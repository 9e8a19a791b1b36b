package query

import (
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	customsv1 "github.com/customs-dev/customs/gen/go/customs/v1"
)

func TestPageTokenRoundTrip(t *testing.T) {
	t.Parallel()
	a := &customsv1.Artifact{Digest: digestA, FirstSeenAt: timestamppb.New(time.Unix(1700000000, 123))}
	got, err := decodePageToken(encodePageToken(a))
	if err != nil || got.GetDigest() != digestA || !got.GetFirstSeenAt().AsTime().Equal(a.GetFirstSeenAt().AsTime()) {
		t.Fatalf("round trip = %v, %v", got, err)
	}
	for _, bad := range []string{"!!", "", "MTIz", "MTIzfHNoYTI1Njp4"} {
		if _, err := decodePageToken(bad); err == nil {
			t.Errorf("decodePageToken(%q) accepted", bad)
		}
	}
}

func FuzzDecodePageToken(f *testing.F) {
	f.Add(encodePageToken(&customsv1.Artifact{Digest: digestA, FirstSeenAt: timestamppb.Now()}))
	f.Add("MTIzfHNoYTI1Njp4")
	f.Fuzz(func(t *testing.T, tok string) {
		a, err := decodePageToken(tok)
		if err == nil && a.GetDigest() == "" {
			t.Fatalf("accepted %q without a digest", tok)
		}
	})
}
