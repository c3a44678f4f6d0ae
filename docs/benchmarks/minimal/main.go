// Command minimal is the floor of the allocate benchmark: the least a Go
// program must do to hand out a port durably — flock, read the registry,
// bind-test a port, write a temp file, fsync, rename, append a log line,
// fsync the folder and the log — with none of gracectl's checks, formats or
// dependencies. bench.py times it beside `gracectl allocate`, taking turns.
//
//	minimal DIR START END
package main

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
)

func main() {
	dir := os.Args[1]
	start, _ := strconv.Atoi(os.Args[2])
	end, _ := strconv.Atoi(os.Args[3])
	lock, err := os.OpenFile(filepath.Join(dir, "lock"), os.O_CREATE|os.O_RDONLY, 0o644)
	if err != nil {
		panic(err)
	}
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		panic(err)
	}
	path := filepath.Join(dir, "registry.json")
	reg := map[string]map[string]any{}
	if data, err := os.ReadFile(path); err == nil {
		if err := json.Unmarshal(data, &reg); err != nil {
			panic(err)
		}
	}
	for p := start; p <= end; p++ {
		key := strconv.Itoa(p)
		if _, taken := reg[key]; taken {
			continue
		}
		l, err := net.Listen("tcp", ":"+key)
		if err != nil {
			continue
		}
		l.Close()
		reg[key] = map[string]any{"port": p, "service_name": "minimal"}
		data, _ := json.MarshalIndent(reg, "", "  ")
		tmp := path + ".tmp"
		f, err := os.Create(tmp)
		if err != nil {
			panic(err)
		}
		f.Write(data)
		f.Sync()
		f.Close()
		if err := os.Rename(tmp, path); err != nil {
			panic(err)
		}
		log, err := os.OpenFile(filepath.Join(dir, "log.jsonl"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			panic(err)
		}
		fmt.Fprintf(log, "{\"action\":\"allocate\",\"port\":%d}\n", p)
		d, _ := os.Open(dir)
		d.Sync()
		log.Sync()
		log.Close()
		fmt.Println(p)
		return
	}
	os.Exit(1)
}
