// What the two chat pages share (the server's page, src/web, and the in-browser one, src/web-app): the images of a
// conversation, the camera dialog with live mode, the decoding settings, the transcript's bubbles, and the wiring of
// the controls. A page brings how it reads image files, sends a question, stops an answer and takes a camera frame.

const $ = (id) => document.getElementById(id);

/** A file as a data: URL. */
export function readAsDataUrl(file) {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(reader.result);
    reader.onerror = () => reject(reader.error);
    reader.readAsDataURL(file);
  });
}

/**
 * The shared controls over the page's `state` ({ images: [{ url, … }], shown, messages, controller, conversation }).
 * `page` gives useImageFiles(files), send(), stop(), captureFrame() (the camera dialog's Capture button), the
 * LiveCamera, setStatus(kind, title), and the text shown for sampling.
 */
export function createChatShell(state, page) {
  let cameraStream = null;

  /** Images go with the first question: once a conversation has started, a new image starts a new one. */
  function addImages(images) {
    if (state.messages.length > 0 || state.controller) {
      newConversation();
      state.images = [];
      addNotice(images.length > 1 ? 'New images, new conversation.' : 'New image, new conversation.');
    }
    state.images.push(...images);
    state.shown = state.images.length - 1;
    renderImages();
    $('question').focus();
  }

  /** Removes one image (or, without an index, all of them); a conversation that has started starts over. */
  function removeImage(index) {
    if (state.messages.length > 0 || state.controller) newConversation();
    if (index === undefined) state.images = [];
    else state.images.splice(index, 1);
    state.shown = Math.min(state.shown, state.images.length - 1);
    if (state.shown < 0 && state.images.length > 0) state.shown = 0;
    renderImages();
  }

  /** The preview (the image chosen), the thumbnails with their remove buttons (two images or more), the buttons. */
  function renderImages() {
    const count = state.images.length;
    $('preview').hidden = count === 0;
    if (count > 0) $('preview').src = state.images[state.shown].url;
    else $('preview').removeAttribute('src');
    $('drop-hint').hidden = count > 0;
    $('remove-image').hidden = count === 0;
    $('remove-image').textContent = count > 1 ? 'Remove all' : 'Remove';
    $('thumbnails').replaceChildren(...state.images.map((image, i) => {
      const item = document.createElement('li');
      item.className = i === state.shown ? 'shown' : '';
      const thumbnail = document.createElement('img');
      thumbnail.src = image.url;
      thumbnail.alt = `Image ${i + 1}`;
      thumbnail.addEventListener('click', () => {
        state.shown = i;
        renderImages();
      });
      const remove = document.createElement('button');
      remove.type = 'button';
      remove.className = 'remove-thumbnail';
      remove.textContent = '×';
      remove.title = `Remove image ${i + 1}`;
      remove.setAttribute('aria-label', `Remove image ${i + 1}`);
      remove.addEventListener('click', () => removeImage(i));
      item.append(thumbnail, remove);
      return item;
    }));
    $('thumbnails').hidden = count < 2;
  }

  async function openCamera() {
    if (!navigator.mediaDevices?.getUserMedia) {
      showError('The camera needs a secure page: open this page as http://localhost or over https.');
      return;
    }
    try {
      cameraStream = await navigator.mediaDevices.getUserMedia({ video: { facingMode: 'environment' }, audio: false });
    } catch (err) {
      showError(`The camera could not be opened: ${err.message || err.name}`);
      return;
    }
    $('camera-video').srcObject = cameraStream;
    $('camera-dialog').showModal();
  }

  function closeCamera() {
    page.liveCamera.stop();
    showLiveState();
    cameraStream?.getTracks().forEach((track) => track.stop());
    cameraStream = null;
    $('camera-video').srcObject = null;
    if ($('camera-dialog').open) $('camera-dialog').close();
  }

  function toggleLive() {
    if (page.liveCamera.running) page.liveCamera.stop();
    else page.liveCamera.start();
    showLiveState();
  }

  function showLiveState() {
    const running = page.liveCamera.running;
    $('live-toggle').textContent = running ? 'Stop live' : 'Start live';
    $('live-toggle').setAttribute('aria-pressed', String(running));
    $('camera-capture').disabled = running;
  }

  function decoding() {
    return document.querySelector('input[name="decoding"]:checked').value;
  }

  function showDecodingFields() {
    const mode = decoding();
    for (const field of document.querySelectorAll('.field[data-for]')) field.hidden = field.dataset.for !== mode;
    $('decoding-note').textContent = {
      sample: page.samplingNote,
      greedy: 'Greedy: always the most likely next token, the same answer every time.',
      beam: 'Beam search: the answer appears all at once when it is complete.',
    }[mode];
  }

  /** A number field's value, or `fallback` when it is empty or not a number. */
  function numberField(id, fallback) {
    const value = Number($(id).value);
    return Number.isFinite(value) && $(id).value !== '' ? value : fallback;
  }

  function newConversation() {
    state.controller?.abort();
    state.conversation += 1;
    state.messages = [];
    for (const el of [...$('transcript').children]) if (el.id !== 'empty-state') el.remove();
    $('empty-state').hidden = false;
  }

  function addBubble(className, text) {
    $('empty-state').hidden = true;
    const bubble = document.createElement('div');
    bubble.className = `message ${className}`;
    const body = document.createElement('span');
    body.className = 'text';
    body.textContent = text;
    bubble.append(body);
    $('transcript').append(bubble);
    scrollToEnd();
    return bubble;
  }

  const addNotice = (text) => addBubble('notice', text);
  const showError = (text) => addBubble('error', text);

  function scrollToEnd() {
    $('transcript').scrollTop = $('transcript').scrollHeight;
  }

  function setBusy(busy) {
    $('send').hidden = busy;
    $('stop').hidden = !busy;
    page.setStatus(busy ? 'busy' : 'ok', busy ? 'answering' : 'ready');
  }

  function wire() {
    const dropZone = $('drop-zone');
    $('choose-image').addEventListener('click', () => $('file-input').click());
    dropZone.addEventListener('click', () => $('file-input').click());
    dropZone.addEventListener('keydown', (e) => {
      if (e.key === 'Enter' || e.key === ' ') {
        e.preventDefault();
        $('file-input').click();
      }
    });
    $('file-input').addEventListener('change', () => {
      const files = [...$('file-input').files];
      $('file-input').value = '';
      if (files.length > 0) page.useImageFiles(files);
    });
    $('remove-image').addEventListener('click', () => removeImage());
    for (const type of ['dragenter', 'dragover']) {
      document.addEventListener(type, (e) => {
        e.preventDefault();
        dropZone.classList.add('dragging');
      });
    }
    document.addEventListener('dragleave', (e) => {
      if (!e.relatedTarget) dropZone.classList.remove('dragging');
    });
    document.addEventListener('drop', (e) => {
      e.preventDefault();
      dropZone.classList.remove('dragging');
      const files = [...(e.dataTransfer?.files ?? [])];
      if (files.length > 0) page.useImageFiles(files);
    });
    document.addEventListener('paste', (e) => {
      const items = [...(e.clipboardData?.items ?? [])].filter((i) => i.kind === 'file' && i.type.startsWith('image/'));
      if (items.length === 0) return;
      e.preventDefault();
      page.useImageFiles(items.map((item) => item.getAsFile()));
    });

    $('open-camera').addEventListener('click', openCamera);
    $('camera-cancel').addEventListener('click', closeCamera);
    $('camera-capture').addEventListener('click', page.captureFrame);
    $('camera-dialog').addEventListener('close', closeCamera);
    $('live-toggle').addEventListener('click', toggleLive);
    // Enter in the standing question must not submit the dialog's form, which would close it.
    $('camera-dialog').querySelector('form').addEventListener('submit', (e) => e.preventDefault());

    for (const radio of document.querySelectorAll('input[name="decoding"]')) radio.addEventListener('change', showDecodingFields);
    showDecodingFields();

    $('composer').addEventListener('submit', (e) => {
      e.preventDefault();
      page.send();
    });
    $('question').addEventListener('keydown', (e) => {
      // Enter sends, Shift+Enter breaks the line; Enter that ends an IME composition (Chinese input) does neither.
      if (e.key === 'Enter' && !e.shiftKey && !e.isComposing && e.keyCode !== 229) {
        e.preventDefault();
        page.send();
      }
    });
    $('stop').addEventListener('click', page.stop);
    $('new-chat').addEventListener('click', () => {
      newConversation();
      $('question').focus();
    });
  }

  return { addImages, closeCamera, decoding, numberField, addBubble, showError, scrollToEnd, setBusy, wire };
}
