package rules

import "testing"

func BenchmarkEvaluate(b *testing.B) {
	f, err := Parse([]byte(sampleRules))
	if err != nil {
		b.Fatal(err)
	}
	facts := Facts{
		Tags: []string{"v1.2.3", "1234567", "latest"}, SignedBy: []string{"release"},
		Attested: []string{"https://cyclonedx.org/bom"}, Scanned: true, Counts: map[string]int{"high": 2},
		Environments: []string{"staging"},
	}
	for b.Loop() {
		m, ok := f.Target("reg:5000", "team/app", "prod")
		if !ok {
			b.Fatal("no target")
		}
		if d := Evaluate(m, facts); !d.Allowed {
			b.Fatal(d.Reason)
		}
	}
}
