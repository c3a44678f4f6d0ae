package api

import (
	"os"
	"testing"

	"github.com/gracectl/gracectl/registry/testenv"
)

// Every process the tests start is killed by the end, even one a failed
// test left behind (testenv.Main).
func TestMain(m *testing.M) { os.Exit(testenv.Main(m).Run()) }
