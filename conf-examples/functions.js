// Functions that react to events, inside nginx (njs).  Each one gets the
// stored event as the body of a POST (x-events-tenant says whose) and
// answers 2xx when it is done; anything else is retried later.

function event(r) {
    return JSON.parse(r.requestText);
}

function data(ev) {
    return (ev.payload && ev.payload.data) || {};
}

// ticket.created: triage, then publish ticket.triaged through the API
async function onTicketCreated(r) {
    const ev = event(r);
    const title = String(data(ev).title || '');
    const priority = /fire|down|outage/i.test(title) ? 'high' : 'normal';
    const headers = { 'Content-Type': 'application/json' };

    if (ev.tenantId) {
        headers['X-Tenant'] = ev.tenantId;
    }

    const res = await ngx.fetch(r.variables.events_url, {
        method: 'POST',
        headers: headers,
        body: JSON.stringify({
            id: ev.id + ':triaged',          // a retry is a repeat
            type: 'ticket.triaged',
            resourceId: ev.resourceId,
            payload: { data: { priority: priority } },
            metadata: { causedBy: ev.id }
        })
    });

    // 201 stored, 200 already stored by an earlier try: done either way
    r.return(res.status === 201 || res.status === 200 ? 204 : 502);
}

// message.created: a "prompt hook", an HTTP API called with a templated
// body; its failure is the delivery's, so the dispatcher retries it
async function promptHook(r) {
    const ev = event(r);
    const actor = (ev.metadata && ev.metadata.actorId) || 'someone';
    const body = {
        model: 'summarizer',
        prompt: `Summarize this message from ${actor}: ${data(ev).text || ''}`,
        metadata: { event: ev.id, type: ev.type }
    };

    const res = await ngx.fetch(r.variables.prompt_api, {
        method: 'POST',
        headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify(body)
    });

    r.return(res.ok ? 204 : 502);
}

const functions = { onTicketCreated, promptHook };

// /fn/NAME runs functions[NAME]
function dispatch(r) {
    const name = r.uri.substring(r.uri.lastIndexOf('/') + 1);
    const fn = functions[name];

    if (!fn) {
        r.return(404, 'no function ' + name + '\n');
        return;
    }

    return fn(r);
}

export default { dispatch, onTicketCreated, promptHook };
