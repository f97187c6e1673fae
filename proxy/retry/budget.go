package retry

import (
	"sync"
	"time"
)

// BudgetConfig sizes a retry budget.
type BudgetConfig struct {
	// Ratio is how many retries each original request earns. Default: 0.2.
	Ratio float64
	// MinPerSecond is the retries allowed per second however few requests
	// there are (so that a quiet service can still retry). Default: 10.
	MinPerSecond float64
	// TTL is how long earned retries stay spendable. Default: 10s.
	TTL time.Duration
}

// DefaultBudget is the budget unless a Service overrides it.
var DefaultBudget = BudgetConfig{Ratio: 0.2, MinPerSecond: 10, TTL: 10 * time.Second}

// WithDefaults fills the zero fields with DefaultBudget's.
func (c BudgetConfig) WithDefaults() BudgetConfig {
	if c.Ratio == 0 {
		c.Ratio = DefaultBudget.Ratio
	}
	if c.MinPerSecond == 0 {
		c.MinPerSecond = DefaultBudget.MinPerSecond
	}
	if c.TTL <= 0 {
		c.TTL = DefaultBudget.TTL
	}
	return c
}

const budgetSlots = 10

// Budget is a retry budget: at any moment, the retries spent within the last
// TTL are at most Ratio × the original requests of that window plus
// MinPerSecond × the window's length (counted from the budget's start). Over
// any stretch of time the retries are therefore bounded by Ratio × requests
// + MinPerSecond × its duration. It is safe for concurrent use.
type Budget struct {
	cfg   BudgetConfig
	width time.Duration // of a slot

	// mu guards start and slots.
	mu    sync.Mutex
	start time.Time
	slots [budgetSlots]slot
}

// slot counts one TTL/budgetSlots of time.
type slot struct {
	index    int64 // which slot of time since start it counts
	requests float64
	retries  float64
}

// NewBudget returns an empty budget starting at now.
func NewBudget(cfg BudgetConfig, now time.Time) *Budget {
	cfg = cfg.WithDefaults()
	return &Budget{cfg: cfg, width: cfg.TTL / budgetSlots, start: now}
}

// Config returns the budget's configuration, defaults filled in.
func (b *Budget) Config() BudgetConfig { return b.cfg }

// Deposit records an original request at now.
func (b *Budget) Deposit(now time.Time) {
	b.mu.Lock()
	b.slotAt(now).requests++
	b.mu.Unlock()
}

// Withdraw spends one retry at now if the budget allows it.
func (b *Budget) Withdraw(now time.Time) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.available(now) < 1 {
		return false
	}
	b.slotAt(now).retries++
	return true
}

// Available is the number of retries the budget would allow at now.
func (b *Budget) Available(now time.Time) float64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.available(now)
}

// index is the slot of time holding now.
func (b *Budget) index(now time.Time) int64 {
	d := now.Sub(b.start)
	if d < 0 {
		return 0
	}
	return int64(d / b.width)
}

// slotAt returns now's slot, recycling the one that fell out of the window.
func (b *Budget) slotAt(now time.Time) *slot {
	i := b.index(now)
	s := &b.slots[i%budgetSlots]
	if s.index != i {
		*s = slot{index: i}
	}
	return s
}

func (b *Budget) available(now time.Time) float64 {
	cur := b.index(now)
	oldest := max(cur-budgetSlots+1, 0)
	var requests, retries float64
	for i := range b.slots {
		s := &b.slots[i]
		if s.index >= oldest && s.index <= cur {
			requests += s.requests
			retries += s.retries
		}
	}
	// The reserve accrues over the window's time, from the budget's start.
	span := now.Sub(b.start.Add(time.Duration(oldest) * b.width))
	return b.cfg.Ratio*requests + b.cfg.MinPerSecond*span.Seconds() - retries
}
