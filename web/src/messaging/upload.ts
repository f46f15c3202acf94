// File upload with progress: XMLHttpRequest, because fetch reports no upload progress.
// The cap and the types mirror the server's defaults (AGORA_MEDIA_MAX_BYTES,
// AGORA_MEDIA_ALLOWED_TYPES) so the user is told before sending; the server still
// decides, and its 413/415 are explained the same way.
import { csrfToken, type Media } from "../api/client"

export type { Media }

export const MAX_BYTES = 10 * 1024 * 1024
export const ALLOWED: Record<string, string> = {
  "image/jpeg": "JPEG",
  "image/png": "PNG",
  "image/gif": "GIF",
  "image/webp": "WebP",
  "video/mp4": "MP4 video",
  "audio/mpeg": "MP3",
  "audio/ogg": "Ogg audio",
  "application/pdf": "PDF",
}
export const RULES = `Up to 10 MB; ${Object.values(ALLOWED).join(", ")}.`

/** Why this file cannot be sent, or null. */
export function refusal(file: File): string | null {
  if (file.size > MAX_BYTES) {
    return `${file.name} is ${(file.size / 1024 / 1024).toFixed(1)} MB: files are limited to 10 MB.`
  }
  if (!(file.type in ALLOWED)) {
    return `${file.name} is not a file type Agora accepts. ${RULES}`
  }
  return null
}

export function upload(file: File, progress: (fraction: number) => void): Promise<Media> {
  return new Promise((resolve, reject) => {
    const request = new XMLHttpRequest()
    request.open("POST", "/api/v1/media")
    const token = csrfToken()
    if (token) request.setRequestHeader("X-CSRF-Token", token)
    request.upload.onprogress = (event) => {
      if (event.lengthComputable) progress(event.loaded / event.total)
    }
    request.onload = () => {
      let body: { error?: string } & Partial<Media> = {}
      try {
        body = JSON.parse(request.responseText)
      } catch {
        /* not JSON: the status says enough */
      }
      if (request.status === 201) return resolve(body as Media)
      const retry = request.getResponseHeader("Retry-After")
      const reason =
        request.status === 413 ? "The file is over the 10 MB limit." : (body.error ?? `Upload failed (${request.status})`)
      reject(new Error(retry ? `${reason} Try again in ${retry} s.` : reason))
    }
    request.onerror = () => reject(new Error("The upload failed: check the connection."))
    const form = new FormData()
    form.append("file", file)
    request.send(form)
  })
}
