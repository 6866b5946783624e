package main

import (
	"bytes"
	"errors"
	"flag"
	"io"
	"os"
	"os/exec"
	"regexp"
	"testing"

	"go.yaml.in/yaml/v3"
)

// flagEnvNames is the set of RINGTRAIN_* variables the trainer reads.
func flagEnvNames() map[string]bool {
	names := map[string]bool{}
	fs := newFlagSet(&config{}, io.Discard)
	fs.VisitAll(func(f *flag.Flag) { names[envName(f.Name)] = true })
	return names
}

func TestKubernetesManifest(t *testing.T) {
	b, err := os.ReadFile("../../deploy/kubernetes/ringtrain.yaml")
	if err != nil {
		t.Fatal(err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	type container struct {
		Env []struct {
			Name string `yaml:"name"`
		} `yaml:"env"`
	}
	type doc struct {
		Kind     string `yaml:"kind"`
		Metadata struct {
			Name string `yaml:"name"`
		} `yaml:"metadata"`
		Spec struct {
			ClusterIP   string `yaml:"clusterIP"`
			ServiceName string `yaml:"serviceName"`
			Selector    struct {
				MatchLabels map[string]string `yaml:"matchLabels"`
			} `yaml:"selector"`
			Template struct {
				Metadata struct {
					Labels map[string]string `yaml:"labels"`
				} `yaml:"metadata"`
				Spec struct {
					Containers []container `yaml:"containers"`
				} `yaml:"spec"`
			} `yaml:"template"`
		} `yaml:"spec"`
	}
	kinds := map[string]doc{}
	for {
		var d doc
		if err := dec.Decode(&d); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatalf("YAML does not parse: %v", err)
		}
		kinds[d.Kind] = d
	}
	svc, ok := kinds["Service"]
	if !ok || svc.Spec.ClusterIP != "None" {
		t.Fatalf("want a headless Service, got %+v", svc)
	}
	ss, ok := kinds["StatefulSet"]
	if !ok {
		t.Fatal("no StatefulSet")
	}
	if ss.Spec.ServiceName != svc.Metadata.Name {
		t.Errorf("StatefulSet serviceName %q, Service %q", ss.Spec.ServiceName, svc.Metadata.Name)
	}
	for k, v := range ss.Spec.Selector.MatchLabels {
		if ss.Spec.Template.Metadata.Labels[k] != v {
			t.Errorf("selector %s=%s does not match the pod labels", k, v)
		}
	}
	known := flagEnvNames()
	seen := 0
	for _, c := range ss.Spec.Template.Spec.Containers {
		for _, e := range c.Env {
			if len(e.Name) > 10 && e.Name[:10] == "RINGTRAIN_" {
				seen++
				if !known[e.Name] {
					t.Errorf("manifest sets %s, which the trainer does not read", e.Name)
				}
			}
		}
	}
	for _, must := range []string{"RINGTRAIN_SEEDS", "RINGTRAIN_SECRET"} {
		if !bytes.Contains(b, []byte(must)) {
			t.Errorf("manifest lacks %s", must)
		}
	}
	if seen == 0 {
		t.Error("manifest sets no RINGTRAIN_ variables")
	}
}

func TestSlurmScript(t *testing.T) {
	const path = "../../deploy/slurm/ringtrain.sbatch"
	if out, err := exec.Command("bash", "-n", path).CombinedOutput(); err != nil {
		t.Fatalf("bash -n: %v\n%s", err, out)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	known := flagEnvNames()
	for _, m := range regexp.MustCompile(`RINGTRAIN_[A-Z_]+`).FindAll(b, -1) {
		if !known[string(m)] {
			t.Errorf("script sets %s, which the trainer does not read", m)
		}
	}
	if !bytes.Contains(b, []byte("SLURM_JOB_NODELIST")) {
		t.Error("script does not take its seeds from SLURM_JOB_NODELIST")
	}
}
