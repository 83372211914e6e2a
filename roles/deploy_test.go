package roles_test

import (
	"path/filepath"
	"testing"

	"github.com/imcloud/imcloud/roles"
)

// The example configs under deploy/ must load and validate for their role,
// so the deployment guide never ships a config that refuses to start.
func TestDeployConfigsValidate(t *testing.T) {
	for _, role := range []string{roles.RoleCloud, roles.RoleJob, roles.RoleLogic} {
		t.Run(role, func(t *testing.T) {
			cfg, err := roles.Load(filepath.Join("..", "deploy", "config", role+".yaml"), nil)
			if err != nil {
				t.Fatal(err)
			}
			if err := cfg.Validate(role); err != nil {
				t.Fatal(err)
			}
		})
	}
}
