package vulndb

import (
	"testing"
)

func TestDefaultAdvisoriesAreValid(t *testing.T) {
	t.Parallel()
	a := Default()
	if len(a.Advisories) == 0 || len(a.Vulnerabilities) == 0 {
		t.Fatalf("default advisories are empty: %+v", a)
	}
}

func TestParseRejectsBadAdvisories(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		yaml string
	}{
		{name: "unknown field", yaml: "updated_at: 2026-01-01T00:00:00Z\nbogus: 1\n"},
		{name: "no updated_at", yaml: "sources: []\n"},
		{name: "bucket without source", yaml: "updated_at: 2026-01-01T00:00:00Z\nvulnerabilities: [{id: CVE-1}]\nadvisories: [{bucket: x, package: p, id: CVE-1, fixed: '1'}]\n"},
		{name: "undescribed vulnerability", yaml: "updated_at: 2026-01-01T00:00:00Z\nsources: [{bucket: x, id: x}]\nadvisories: [{bucket: x, package: p, id: CVE-1, fixed: '1'}]\n"},
		{name: "no version", yaml: "updated_at: 2026-01-01T00:00:00Z\nsources: [{bucket: x, id: x}]\nvulnerabilities: [{id: CVE-1}]\nadvisories: [{bucket: x, package: p, id: CVE-1}]\n"},
		{name: "bad severity", yaml: "updated_at: 2026-01-01T00:00:00Z\nvulnerabilities: [{id: CVE-1, severity: {nvd: SEVERE}}]\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if _, err := Parse([]byte(tt.yaml)); err == nil {
				t.Fatalf("Parse accepted %q", tt.yaml)
			}
		})
	}
}

func FuzzParse(f *testing.F) {
	f.Add(defaultAdvisories)
	f.Add([]byte("updated_at: 2026-01-01T00:00:00Z\n"))
	f.Add([]byte("advisories: [{bucket: 'alpine 3.19'}]"))
	f.Fuzz(func(t *testing.T, data []byte) {
		a, err := Parse(data)
		if err != nil {
			return
		}
		if err := a.Validate(); err != nil {
			t.Fatalf("Parse returned advisories that do not validate: %v", err)
		}
	})
}
