package main

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/eventfn/eventfn/actions"
	"github.com/eventfn/eventfn/rules"
)

// TestSystemdUnit checks the example unit keeps its hardening and its
// reload and restart policies.
func TestSystemdUnit(t *testing.T) {
	src, err := os.ReadFile("../../examples/systemd/eventfn.service")
	if err != nil {
		t.Fatal(err)
	}
	set := map[string][]string{}
	section := ""
	for _, l := range strings.Split(string(src), "\n") {
		l = strings.TrimSpace(l)
		if l == "" || l[0] == '#' {
			continue
		}
		if strings.HasPrefix(l, "[") {
			section = l
			continue
		}
		k, v, ok := strings.Cut(l, "=")
		if !ok {
			t.Errorf("unit line %q", l)
			continue
		}
		set[section+k] = append(set[section+k], v)
	}
	for key, want := range map[string]string{
		"DynamicUser": "yes", "ProtectSystem": "strict", "ProtectHome": "yes", "PrivateTmp": "yes",
		"NoNewPrivileges": "yes", "StateDirectory": "eventfn", "Restart": "on-failure",
		"ExecReload": "/bin/kill -HUP $MAINPID", "RestrictAddressFamilies": "AF_UNIX AF_INET AF_INET6",
		"EnvironmentFile": "-/etc/eventfn/eventfn.env", "KillSignal": "SIGTERM",
	} {
		if got := set["[Service]"+key]; len(got) != 1 || got[0] != want {
			t.Errorf("[Service] %s = %v, want %q", key, got, want)
		}
	}
	exec := set["[Service]ExecStart"]
	if len(exec) != 1 || !strings.Contains(exec[0], " run ") || !strings.Contains(exec[0], "--listen") {
		t.Errorf("ExecStart = %v", exec)
	}
	if len(set["[Service]ReadWritePaths"]) == 0 {
		t.Error("no ReadWritePaths (munge socket) documented")
	}
	if len(set["[Install]WantedBy"]) != 1 {
		t.Error("no [Install] WantedBy")
	}
}

// manifests reads every YAML document of the Kubernetes example, by kind.
func manifests(t *testing.T) map[string]map[string]any {
	t.Helper()
	files, _ := filepath.Glob("../../examples/kubernetes/*.yaml")
	out := map[string]map[string]any{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		dec := yaml.NewDecoder(bytes.NewReader(b))
		for {
			var doc map[string]any
			if err := dec.Decode(&doc); errors.Is(err, io.EOF) {
				break
			} else if err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			kind, _ := doc["kind"].(string)
			out[kind] = doc
		}
	}
	return out
}

// get walks a decoded YAML tree: keys for maps, "name=x" picks the list
// element with that name, "0" the first element.
func get(t *testing.T, v any, keys ...string) any {
	t.Helper()
	for _, k := range keys {
		switch c := v.(type) {
		case map[string]any:
			v = c[k]
		case []any:
			var next any
			if k == "0" && len(c) > 0 {
				next = c[0]
			}
			for _, e := range c {
				if m, ok := e.(map[string]any); ok && "name="+toString(m["name"]) == k {
					next = e
				}
			}
			v = next
		default:
			t.Fatalf("path %v: %q is not reachable", keys, k)
		}
	}
	return v
}

func toString(v any) string {
	s, _ := v.(string)
	return s
}

// TestKubernetesExample checks the Deployment's probes and security
// settings, and that its ConfigMap holds a valid rules file whose secret
// file and health port the other manifests provide.
func TestKubernetesExample(t *testing.T) {
	m := manifests(t)
	for _, kind := range []string{"Deployment", "ConfigMap", "Secret", "Service", "Kustomization"} {
		if m[kind] == nil {
			t.Fatalf("no %s in examples/kubernetes", kind)
		}
	}
	dep := m["Deployment"]
	pod := get(t, dep, "spec", "template", "spec")
	c := get(t, pod, "containers", "0")
	if p := get(t, c, "livenessProbe", "httpGet", "path"); p != "/healthz" {
		t.Errorf("liveness probe path = %v", p)
	}
	if p := get(t, c, "readinessProbe", "httpGet", "path"); p != "/readyz" {
		t.Errorf("readiness probe path = %v", p)
	}
	if v := get(t, pod, "securityContext", "runAsNonRoot"); v != true {
		t.Errorf("runAsNonRoot = %v", v)
	}
	for key, want := range map[string]any{"readOnlyRootFilesystem": true, "allowPrivilegeEscalation": false} {
		if v := get(t, c, "securityContext", key); v != want {
			t.Errorf("container securityContext.%s = %v, want %v", key, v, want)
		}
	}
	if v := get(t, c, "ports", "0", "containerPort"); v != 9090 {
		t.Errorf("containerPort = %v, want 9090 (the image's --listen)", v)
	}
	if v := get(t, m["Service"], "spec", "ports", "0", "targetPort"); v != get(t, c, "ports", "0", "name") {
		t.Errorf("Service targetPort %v is not the container's port name", v)
	}

	// Where the volumes land.
	mounts := map[string]string{} // volume → mount path
	for _, vm := range get(t, c, "volumeMounts").([]any) {
		mounts[toString(vm.(map[string]any)["name"])] = toString(vm.(map[string]any)["mountPath"])
	}
	volumeOf := func(field, name string) string { // the volume that mounts the named ConfigMap or Secret
		for _, v := range get(t, pod, "volumes").([]any) {
			vm := v.(map[string]any)
			if src, ok := vm[field].(map[string]any); ok && (src["name"] == name || src["secretName"] == name) {
				return toString(vm["name"])
			}
		}
		return ""
	}
	cm, secret := m["ConfigMap"], m["Secret"]
	cmName, secretName := toString(get(t, cm, "metadata", "name")), toString(get(t, secret, "metadata", "name"))
	rulesDir := mounts[volumeOf("configMap", cmName)]
	secretDir := mounts[volumeOf("secret", secretName)]
	if rulesDir == "" || secretDir == "" {
		t.Fatalf("the ConfigMap (%s) or the Secret (%s) is not mounted: %v", rulesDir, secretDir, mounts)
	}
	config := ""
	for _, e := range get(t, c, "env").([]any) {
		if em := e.(map[string]any); em["name"] == "EVENTFN_CONFIG" {
			config = toString(em["value"])
		}
	}
	if path.Dir(config) != rulesDir {
		t.Errorf("EVENTFN_CONFIG %q is not in the ConfigMap's mount %s", config, rulesDir)
	}
	data := get(t, cm, "data", path.Base(config))
	if data == nil {
		t.Fatalf("the ConfigMap has no %s", path.Base(config))
	}
	t.Setenv("WALDUR_API_URL", toString(get(t, c, "env", "name=WALDUR_API_URL", "value")))
	rs, err := rules.Parse("configmap.yaml", []byte(data.(string)), rules.Options{Actions: actions.Builtin()})
	if err != nil {
		t.Fatalf("the ConfigMap's rules: %v", err)
	}
	if tf := rs.Waldur.TokenFile; path.Dir(tf) != secretDir || get(t, secret, "stringData", path.Base(tf)) == nil {
		t.Errorf("waldur.token_file %q is not a key of the mounted Secret (%s)", tf, secretDir)
	}
	if rs.Runner.Listen != ":9090" {
		t.Errorf("runner.listen = %q", rs.Runner.Listen)
	}
	if d, ok := get(t, pod, "terminationGracePeriodSeconds").(int); !ok || float64(d) <= rs.Runner.ShutdownTimeout.Seconds() {
		t.Errorf("terminationGracePeriodSeconds %v must exceed runner.shutdown_timeout %v", d, rs.Runner.ShutdownTimeout)
	}
	if sd := rs.Runner.StateDir; sd == "" || !strings.HasPrefix(sd, mounts["state"]) {
		t.Errorf("runner.state_dir %q is not on the state volume (%s)", sd, mounts["state"])
	}
}
