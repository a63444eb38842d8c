// Socialink groups (protocols/socialink.md §5, §2): create, add, remove, get, members over
// real HTTP; roles, epochs, SOCIALINK_MAX_GROUP_SIZE; and the live membership events a SUP
// client of the same group hears (until part 1's WebSocket carries `group_member` frames).
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { backends, startServer, connect, token, uid, api, waitFor, createChat, closeAll } from './helpers.js';

const v1 = (srv, who, method, path, body) => api(srv.url, who === null ? null : token(who), method, '/api/v1' + path, body);
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/** The group id's 16 bytes, as standard padded base64. */
const mlsId = (id) => Buffer.from(id.replace(/-/g, ''), 'hex').toString('base64');

for (const backend of backends()) {
  describe(`socialink groups on ${backend}`, () => {
    let srv;
    before(async () => {
      // Socialink's own limit applies to its groups, not MAX_GROUP_SIZE (other dialects').
      srv = await startServer({ backend, env: { SOCIALINK_MAX_GROUP_SIZE: '4', MAX_GROUP_SIZE: '2' } });
    });
    after(async () => { await srv.stop(); });

    it('creates a group: the creator is Owner, the others Members, epoch 0, shown to members only', async () => {
      const [alice, bob, carol, eve] = [uid('alice'), uid('bob'), uid('carol'), uid('eve')];
      const res = await v1(srv, alice, 'POST', `/groups/create/${alice}`, {
        name: 'Climbers', description: 'weekend plans', member_ids: [bob, carol, bob, alice],
      });
      assert.equal(res.status, 201, JSON.stringify(res.body));
      const g = res.body;
      assert.match(g.id, UUID);
      assert.equal(g.conversation_id, g.id);
      assert.equal(g.name, 'Climbers');
      assert.equal(g.description, 'weekend plans');
      assert.equal(g.avatar_url, null);
      assert.equal(g.created_by, alice);
      assert.equal(g.member_count, 3);
      assert.equal(g.max_members, 4);
      assert.equal(g.is_public, false);
      assert.equal(g.invite_link, null);
      assert.equal(g.mls_group_id, mlsId(g.id));
      assert.equal(g.current_epoch, 0);
      assert.ok(!Number.isNaN(Date.parse(g.created_at)) && !Number.isNaN(Date.parse(g.updated_at)));

      const shown = await v1(srv, carol, 'GET', `/groups/${g.id}`);
      assert.equal(shown.status, 200);
      assert.deepEqual({ ...shown.body, updated_at: null }, { ...g, updated_at: null });

      const members = await v1(srv, bob, 'GET', `/groups/${g.id}/members`);
      assert.equal(members.status, 200);
      assert.equal(members.body.count, 3);
      const byUser = Object.fromEntries(members.body.members.map((m) => [m.user_id, m]));
      assert.deepEqual(Object.keys(byUser).sort(), [alice, bob, carol].sort());
      assert.equal(byUser[alice].role, 'Owner');
      assert.equal(byUser[alice].added_by, null);
      for (const m of [byUser[bob], byUser[carol]]) {
        assert.equal(m.role, 'Member');
        assert.equal(m.added_by, alice);
        assert.equal(m.group_id, g.id);
        assert.equal(m.is_muted, false);
        assert.ok(!Number.isNaN(Date.parse(m.joined_at)));
      }

      // Members only (§2): a stranger is refused, an unknown or malformed id is not found.
      for (const path of [`/groups/${g.id}`, `/groups/${g.id}/members`]) {
        const refused = await v1(srv, eve, 'GET', path);
        assert.equal(refused.status, 403);
        assert.equal(refused.body.code, 'FORBIDDEN');
        assert.equal(typeof refused.body.error, 'string');
      }
      for (const id of ['00000000-0000-7000-8000-000000000000', 'not-a-group']) {
        const missing = await v1(srv, alice, 'GET', `/groups/${id}`);
        assert.equal(missing.status, 404);
        assert.equal(missing.body.code, 'NOT_FOUND');
      }
      // A direct conversation is not a group.
      const direct = await createChat(srv.url, token(alice), 'direct', [bob]);
      assert.equal((await v1(srv, alice, 'GET', `/groups/${direct}`)).status, 404);
      assert.equal((await v1(srv, null, 'GET', `/groups/${g.id}`)).status, 401);
    });

    it('checks the actor before the body, then the body', async () => {
      const [alice, bob] = [uid('alice'), uid('bob')];
      // Not even JSON, but the path names someone else: 403 first.
      const res = await fetch(`${srv.url}/api/v1/groups/create/${bob}`, {
        method: 'POST', headers: { authorization: `Bearer ${token(alice)}` }, body: 'not json',
      });
      assert.equal(res.status, 403);
      assert.equal((await res.json()).code, 'FORBIDDEN');
      const bad = await fetch(`${srv.url}/api/v1/groups/create/${alice}`, {
        method: 'POST', headers: { authorization: `Bearer ${token(alice)}`, 'content-type': 'text/plain' }, body: '{oops',
      });
      assert.equal(bad.status, 400);
      assert.equal((await bad.json()).code, 'INVALID_JSON');
      // Parsed whatever the Content-Type.
      const plain = await fetch(`${srv.url}/api/v1/groups/create/${alice}`, {
        method: 'POST', headers: { authorization: `Bearer ${token(alice)}`, 'content-type': 'text/plain' },
        body: JSON.stringify({ name: 'plain', member_ids: [] }),
      });
      assert.equal(plain.status, 201);
      for (const body of [{ member_ids: [bob] }, { name: '', member_ids: [] }, { name: 'x'.repeat(101) }, { name: 'ok', member_ids: 'bob' }]) {
        const refused = await v1(srv, alice, 'POST', `/groups/create/${alice}`, body);
        assert.equal(refused.status, 400, JSON.stringify(body));
        assert.equal(refused.body.code, 'VALIDATION_FAILED');
      }
      const ok = await v1(srv, alice, 'POST', `/groups/create/${alice}`, { name: 'x'.repeat(100) });
      assert.equal(ok.status, 201, 'member_ids may be left out, 100 characters is a name');
      assert.equal(ok.body.member_count, 1);
    });

    it('adds and removes members: roles decide, each change bumps the epoch, SUP members hear it', async () => {
      const [alice, bob, carol, dave] = [uid('alice'), uid('bob'), uid('carol'), uid('dave')];
      const g = (await v1(srv, alice, 'POST', `/groups/create/${alice}`, { name: 'G', member_ids: [bob] })).body;
      const bobSup = await connect(srv.url, { namespace: '/sup', auth: { token: token(bob) } });
      try {
        // A plain member may not add.
        const refused = await v1(srv, bob, 'POST', `/groups/${g.id}/members/${bob}`, { user_id: carol });
        assert.equal(refused.status, 403);
        // Acting as someone else is refused before anything is read.
        assert.equal((await v1(srv, bob, 'POST', `/groups/${g.id}/members/${alice}`, { user_id: carol })).status, 403);
        assert.equal((await v1(srv, alice, 'POST', `/groups/${g.id}/members/${alice}`, {})).status, 400);

        const joined = waitFor(bobSup, 'chat:member-joined', (e) => e.chatId === g.id && e.userId === carol);
        const added = await v1(srv, alice, 'POST', `/groups/${g.id}/members/${alice}`, { user_id: carol });
        assert.equal(added.status, 200, JSON.stringify(added.body));
        assert.equal(added.body.success, true);
        assert.equal(typeof added.body.message, 'string');
        assert.equal((await joined).addedBy, alice);
        let now = (await v1(srv, carol, 'GET', `/groups/${g.id}`)).body;
        assert.equal(now.current_epoch, 1);
        assert.equal(now.member_count, 3);
        const carolRow = (await v1(srv, carol, 'GET', `/groups/${g.id}/members`)).body.members.find((m) => m.user_id === carol);
        assert.equal(carolRow.role, 'Member');
        assert.equal(carolRow.added_by, alice);

        const again = await v1(srv, alice, 'POST', `/groups/${g.id}/members/${alice}`, { user_id: carol });
        assert.equal(again.status, 409);
        assert.equal(again.body.code, 'CONFLICT');

        // A plain member may not remove another; nobody removes the owner; the owner cannot leave.
        assert.equal((await v1(srv, bob, 'DELETE', `/groups/${g.id}/members/${carol}/${bob}`)).status, 403);
        assert.equal((await v1(srv, alice, 'DELETE', `/groups/${g.id}/members/${alice}/${alice}`)).status, 403);
        assert.equal((await v1(srv, bob, 'DELETE', `/groups/${g.id}/members/${alice}/${bob}`)).status, 403);
        assert.equal((await v1(srv, bob, 'DELETE', `/groups/${g.id}/members/${carol}/${alice}`)).status, 403, 'actor check');
        const notMember = await v1(srv, alice, 'DELETE', `/groups/${g.id}/members/${dave}/${alice}`);
        assert.equal(notMember.status, 404);
        assert.equal(notMember.body.code, 'NOT_FOUND');
        now = (await v1(srv, alice, 'GET', `/groups/${g.id}`)).body;
        assert.equal(now.current_epoch, 1, 'refused changes leave the epoch alone');

        // The owner removes carol; bob leaves. The removed one hears it too.
        const left = waitFor(bobSup, 'chat:member-left', (e) => e.chatId === g.id && e.userId === carol);
        const removed = await v1(srv, alice, 'DELETE', `/groups/${g.id}/members/${carol}/${alice}`);
        assert.equal(removed.status, 200);
        assert.equal(removed.body.success, true);
        assert.equal((await left).removedBy, alice);
        const bobLeft = waitFor(bobSup, 'chat:member-left', (e) => e.chatId === g.id && e.userId === bob);
        const leaving = await v1(srv, bob, 'DELETE', `/groups/${g.id}/members/${bob}/${bob}`);
        assert.equal(leaving.status, 200);
        assert.equal((await bobLeft).removedBy, bob);
        now = (await v1(srv, alice, 'GET', `/groups/${g.id}`)).body;
        assert.equal(now.current_epoch, 3);
        assert.equal(now.member_count, 1);
        // A group message shows the group's epoch.
        const sent = await v1(srv, alice, 'POST', `/groups/${g.id}/send/${alice}`, { ciphertext: Buffer.from('note').toString('base64') });
        assert.equal(sent.status, 201, JSON.stringify(sent.body));
        const history = await v1(srv, alice, 'GET', `/messages/conversation/${alice}?conversation_id=${g.id}`);
        const mine = history.body.messages.find((m) => m.id === sent.body.message_id);
        assert.deepEqual([mine.is_group, mine.group_epoch, mine.recipient_id], [true, 3, null]);
        // Removed members lose the group.
        for (const who of [bob, carol]) {
          assert.equal((await v1(srv, who, 'GET', `/groups/${g.id}`)).status, 403);
          assert.equal((await v1(srv, who, 'GET', `/groups/${g.id}/members`)).status, 403);
        }
      } finally {
        closeAll(bobSup);
      }
    });

    it('holds SOCIALINK_MAX_GROUP_SIZE members, the creator included; beyond it nothing is stored', async () => {
      const [alice, b, c, d, e] = [uid('alice'), uid('b'), uid('c'), uid('d'), uid('e')];
      const full = await v1(srv, alice, 'POST', `/groups/create/${alice}`, { name: 'big', member_ids: [b, c, d, e] });
      assert.equal(full.status, 409);
      assert.equal(full.body.code, 'GROUP_FULL');
      // MAX_GROUP_SIZE is 2 on this server: Socialink's groups go by their own limit.
      const g = await v1(srv, alice, 'POST', `/groups/create/${alice}`, { name: 'big', member_ids: [b, c] });
      assert.equal(g.status, 201);
      assert.equal((await v1(srv, alice, 'POST', `/groups/${g.body.id}/members/${alice}`, { user_id: d })).status, 200);
      const over = await v1(srv, alice, 'POST', `/groups/${g.body.id}/members/${alice}`, { user_id: e });
      assert.equal(over.status, 409);
      assert.equal(over.body.code, 'GROUP_FULL');
      const now = (await v1(srv, alice, 'GET', `/groups/${g.body.id}`)).body;
      assert.equal(now.member_count, 4);
      assert.equal(now.current_epoch, 1);
      assert.equal((await v1(srv, e, 'GET', `/groups/${g.body.id}`)).status, 403);
    });

    it('is the same conversation other dialects see: Spark lists it, SUP members get its messages', async () => {
      const [alice, bob] = [uid('alice'), uid('bob')];
      const g = (await v1(srv, alice, 'POST', `/groups/create/${alice}`, { name: 'shared', member_ids: [bob] })).body;
      const listed = await api(srv.url, token(bob), 'GET', `/api/conversations/${g.id}`);
      assert.equal(listed.status, 200);
      assert.equal(listed.body.data.type, 'group');
      assert.equal(listed.body.data.name, 'shared');
    });
  });
}
