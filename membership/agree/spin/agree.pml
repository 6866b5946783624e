/*
 * agree.pml: the agreement on one base epoch's successor (package agree,
 * propose.go) as a Promela model, checked exhaustively by spin.
 *
 * N acceptors are the base epoch's members. NP proposers (coordinators
 * that each believe they should decide) each propose their own value: a
 * successor member set, chosen nondeterministically among all nonempty
 * subsets of the base, so every mix of staying members and leavers (base
 * members outside the value) is covered. Ballots 1..MAXB; proposer p owns
 * the ballots b with (b-1) % NP == p and may give a ballot up at any
 * point (a timeout or a nack) and try its next one.
 *
 * Messages are sets that only grow: a message may be received late, never
 * (loss), or again (duplication), in any order. Acceptor state is durable
 * (HardState is persisted before a reply is sent), so a crash and restart
 * of an acceptor is a delay; a crashed proposer is one that stops.
 *
 * Safety, asserted when a proposer decides:
 *   - every decided value was accepted under one ballot by a majority of
 *     the base's members, leavers included;
 *   - at most one value is decided for the base.
 *
 * -DBROKEN applies the defective rule of issue 12 (legacySplit): a value
 * needs promises and acceptances only from its own members. spin must find
 * a violation then: of the majority assertion, and with -DNOMAJORITY (that
 * assertion off) of the agreement one, two values decided for one base.
 *
 * Sizes (spin 6.5.2, -DSAFETY -DCOLLAPSE): N=3, MAXB=3: 1.3 million states,
 * about 1.5 s; N=4, MAXB=3: 14.7 million states, about 30 s of CPU and
 * 1 GB, too much for every CI run (model_test.go checks N=3).
 */
#ifndef N
#define N 3
#endif
#define NP 2
#ifndef MAXB
#define MAXB 3
#endif

typedef Row { bit a[N] };

/*
 * An acceptor's accepted ballot and value need no variables of their own:
 * they are the highest b with accd[b].a[i] and accVal[b]. Neither does a
 * promise's content: an acceptor that promised b accepts no ballot below
 * b afterwards, so what it reported is its highest accepted ballot below
 * b, read from the same history.
 */
byte promised[N]; /* acceptor: highest ballot promised */

bit prep[MAXB+1];   /* prepare(b) sent to every acceptor */
Row prom[MAXB+1];   /* promise(b) sent by acceptor i */
bit acc[MAXB+1];    /* accept(b, accVal[b]) sent to every acceptor */
byte accVal[MAXB+1];
Row accd[MAXB+1];   /* accepted(b) sent by acceptor i */

byte mem[NP+1];  /* value v's members: a bit mask over the base */
byte decided;    /* the value decided for the base, 0 none */

#define IN(m, i) (((m) >> (i)) & 1)
#if N == 3
#define ALL 7
#define SUM(r, m) (r.a[0]*IN(m, 0) + r.a[1]*IN(m, 1) + r.a[2]*IN(m, 2))
#define CNT(m) (IN(m, 0) + IN(m, 1) + IN(m, 2))
#else
#define ALL 15
#define SUM(r, m) (r.a[0]*IN(m, 0) + r.a[1]*IN(m, 1) + r.a[2]*IN(m, 2) + r.a[3]*IN(m, 3))
#define CNT(m) (IN(m, 0) + IN(m, 1) + IN(m, 2) + IN(m, 3))
#endif

/* QUORUM: the answers in row suffice for value v. */
#ifdef BROKEN
#define QUORUM(r, v) (SUM(r, mem[v]) == CNT(mem[v]))
#else
#define QUORUM(r, v) (2*SUM(r, ALL) > N)
#endif

#define PREP(i, b) \
	:: d_step { prep[b] && b > promised[i] -> promised[i] = b; prom[b].a[i] = 1 }
#define ACPT(i, b) \
	:: d_step { acc[b] && b >= promised[i] && !accd[b].a[i] -> promised[i] = b; accd[b].a[i] = 1 }

proctype Acceptor(byte i) {
end:	do
	PREP(i, 1) PREP(i, 2) PREP(i, 3)
	ACPT(i, 1) ACPT(i, 2) ACPT(i, 3)
#if MAXB > 3
	PREP(i, 4) ACPT(i, 4)
#endif
	od
}

proctype Proposer(byte p) {
	byte b = p + 1, v, best, i, j;
	do
	:: b <= MAXB ->
		prep[b] = 1;
		if
		:: d_step { QUORUM(prom[b], p + 1) ->
			/* adopt the value accepted under the highest ballot
			 * that a promiser reported (below b) */
			v = p + 1; best = 0; i = 0;
			do
			:: i < N ->
				j = 1;
				do
				:: j < b ->
					if
					:: prom[b].a[i] && accd[j].a[i] && j > best ->
						best = j; v = accVal[j]
					:: else
					fi;
					j++
				:: else -> break
				od;
				i++
			:: else -> break
			od;
			accVal[b] = v; acc[b] = 1; best = 0; i = 0; j = 0 }
			if
			:: d_step { QUORUM(accd[b], v) ->
				/* decided: a majority of the whole base accepted v */
#ifndef NOMAJORITY
				assert(2*SUM(accd[b], ALL) > N);
#endif
				assert(decided == 0 || decided == v);
				decided = v; b = MAXB }
			:: skip /* give the ballot up */
			fi
		:: skip /* give the ballot up */
		fi;
		v = 0; b = b + NP
	:: else -> break
	od
}

init {
	atomic {
#ifdef BROKEN
		/* The value's members decide who must answer: proposer 1's
		 * value up to a renaming of the acceptors, proposer 2's any
		 * nonempty subset of the base. (The protocol asks the whole
		 * base, leavers included, whatever the value: the member sets
		 * change no transition and are left out, which keeps the state
		 * space 21 times smaller.) */
		if
		:: mem[1] = 1
		:: mem[1] = 3
		:: mem[1] = 7
#if N > 3
		:: mem[1] = 15
#endif
		fi;
		if
		:: mem[2] = 1
		:: mem[2] = 2
		:: mem[2] = 3
		:: mem[2] = 4
		:: mem[2] = 5
		:: mem[2] = 6
		:: mem[2] = 7
#if N > 3
		:: mem[2] = 8
		:: mem[2] = 9
		:: mem[2] = 10
		:: mem[2] = 11
		:: mem[2] = 12
		:: mem[2] = 13
		:: mem[2] = 14
		:: mem[2] = 15
#endif
		fi;
#endif
		byte k = 0;
		do
		:: k < N -> run Acceptor(k); k++
		:: else -> break
		od;
		k = 0;
		run Proposer(0);
		run Proposer(1)
	}
}
