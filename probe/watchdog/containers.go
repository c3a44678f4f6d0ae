package watchdog

import (
	"context"
	"time"

	"github.com/gracectl/gracectl/probe/container"
	"github.com/gracectl/gracectl/registry"
)

// containerWatch follows the events of the engines whose containers own
// ports, so that a container that stops, restarts or is removed is looked
// at once, as a process owner's exit is through its pidfd. Only the
// sockets the registry names are followed, and only while it names them:
// a watchdog that meets no container asks no engine.
type containerWatch struct {
	w      *Watcher
	events chan string      // IDs of containers that started, died or were removed
	ports  map[string][]int // container ID → its ports, as last read
	follow map[string]context.CancelFunc
}

// sync takes the containers of reg and follows their engines.
func (c *containerWatch) sync(ctx context.Context, reg *registry.Registry) {
	if c.w.Options.Engines == nil {
		return
	}
	c.ports = map[string][]int{}
	sockets := map[string]bool{}
	for _, a := range reg.Sorted() {
		if a.Container != nil && a.Container.Socket != "" {
			c.ports[a.Container.ID] = append(c.ports[a.Container.ID], a.Port)
			sockets[a.Container.Socket] = true
		}
	}
	if c.follow == nil {
		c.follow = map[string]context.CancelFunc{}
	}
	for sock, stop := range c.follow {
		if !sockets[sock] {
			stop()
			delete(c.follow, sock)
		}
	}
	for sock := range sockets {
		if _, ok := c.follow[sock]; !ok {
			fctx, stop := context.WithCancel(ctx)
			c.follow[sock] = stop
			go c.run(fctx, sock)
		}
	}
}

// stop ends every follower.
func (c *containerWatch) stop() {
	for _, stop := range c.follow {
		stop()
	}
}

// run follows one engine's events until ctx ends, connecting again (after
// 1 s, doubling to 30 s) when the stream breaks or cannot be opened.
func (c *containerWatch) run(ctx context.Context, sock string) {
	wait := time.Second
	said := ""
	for {
		started := time.Now()
		opened := func(kind string) {
			c.w.Log.Printf("[PORT-WATCHDOG] Following container events (%s, %s)", kind, sock)
			said = ""
		}
		err := c.w.Options.Engines.Follow(ctx, container.Info{Socket: sock}, container.OwnUID(), opened, func(ev container.Event) {
			switch ev.Action {
			case "start", "restart", "die", "destroy", "remove":
				select {
				case c.events <- ev.ID:
				case <-ctx.Done():
				}
			}
		})
		if ctx.Err() != nil {
			return
		}
		if time.Since(started) > time.Minute {
			wait = time.Second // it had worked for a while
		}
		if msg := err.Error(); msg != said {
			c.w.Log.Printf("[PORT-WATCHDOG] Container events on %s stopped (%v); the cycle checks containers meanwhile", sock, err)
			said = msg
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		wait = min(2*wait, 30*time.Second)
	}
}
